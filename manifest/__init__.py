"""The Slotwise Teams app package: manifest template, icons and the build that fills them in per deployment."""

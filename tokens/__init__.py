"""Bearer-token checks shared by every entrypoint: signing keys from OpenID metadata and JWT claim rules."""

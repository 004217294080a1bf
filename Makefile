# Aliases only; the scripts are the definition.
.PHONY: demo test check bench
demo: ; scripts/demo
test: ; scripts/test
check: ; scripts/check
bench: ; .venv/bin/python bench/run_all.py

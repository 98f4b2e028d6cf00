# h2s-checkout: each recipe's comment is its `just --list` description.

set dotenv-load := false

python := env_var_or_default("PYTHON", "python")

# List the recipes
default:
    @just --list

# Run the service on embedded defaults (PostgreSQL under ./.data, Stripe emulator, port 8000)
serve *args:
    {{python}} -m h2s_checkout serve {{args}}

# Lint and type-check, then run the whole test suite against real PostgreSQL and the Stripe emulator
test *args: lint
    {{python}} -m pytest {{args}}

# Make N checkouts and verify each end to end (no argument: starts the embedded stack)
# (not echoed: its arguments may hold --token)
smoke *args:
    @{{python}} -m h2s_checkout smoke {{args}}

# Fuzz the API with schemathesis against a throwaway stack on a temporary data dir (extra args go to `st run`)
fuzz *args:
    {{python}} -m h2s_checkout.cli.fuzz --config-file {{justfile_directory()}}/schemathesis.toml {{args}}

# Apply db/migrations to DATABASE_URL (or the embedded database) and refresh db/schema.sql
migrate:
    {{python}} -m h2s_checkout migrate

# Count orders without jobs, stuck checkouts and orphan sessions; non-zero exit if any (--json)
doctor *args:
    {{python}} -m h2s_checkout doctor {{args}}

# Regenerate db/schema.sql from the migrations on a throwaway embedded database
schema:
    {{python}} -m h2s_checkout.store.schema_dump db/schema.sql

# ruff (lint and format check) on the source and the tests, mypy on the source, the import contracts
lint:
    {{python}} -m ruff check src tests
    {{python}} -m ruff format --check src tests
    {{python}} -m mypy
    @{{just_executable()}} imports

# The layers and the three packages' independence (import-linter, contracts in pyproject.toml)
imports:
    PYTHONPATH="{{justfile_directory()}}/src" {{python}} -c 'from importlinter.cli import lint_imports_command as lint; lint()' --no-cache --no-logo

# Format with ruff
fmt:
    {{python}} -m ruff format src tests
    {{python}} -m ruff check --fix src tests

# Type-check the source
typecheck:
    {{python}} -m mypy

# Regenerate the state diagram in docs/ from the state machine class
docs:
    {{python}} -m h2s_checkout.cli.diagram docs

# Benchmark the service against its ceilings from src/ (it does not ship); writes docs/benchmarks.{md,json,png} (--quick, --against REV, --prefill N, --pooler)
bench *args:
    PYTHONPATH="{{justfile_directory()}}/src${PYTHONPATH:+:$PYTHONPATH}" {{python}} -m h2s_bench {{args}}

"""The request/response edge: errors, schemas, uploads, dependencies and request ids."""

"""Pipeline steps: pure functions first, thin Prefect ``@task`` wrappers over them."""

"""The service's routes, one module per resource (all under ``/v1``)."""

"""The Myriad service: workflow, storage, live layer, REST API, dashboard and CLI."""

"""trustlab backend: REST API, run store and job runner."""

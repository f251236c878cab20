"""Examples of using trustlab over its REST API."""

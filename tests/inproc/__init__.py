"""In-process tests: the real application (registry.app.create_app) behind pytest-aiohttp's test client."""

"""Look at and ship a found model: `show` (size, speed, cell picture) and framework-free `export`."""

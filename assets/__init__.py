"""medic's assets, imported by the DAG files (the project root is on PYTHONPATH, as in Astro)."""

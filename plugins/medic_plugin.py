"""The bundle's plugin file: Airflow loads every AirflowPlugin it finds in the plugins folder.

The plugin itself is ``medic.plugin.MedicPlugin`` (in the package, so the provider info can name
it and a wheel carries it); this file only re-exports it, so a project that copies ``plugins/``
keeps loading it. It must stay the only way it is loaded: Airflow skips a second plugin of the same
name (an ``airflow.plugins`` entry point, say) and reports that as an import error.
"""

from __future__ import annotations

from medic.plugin import MedicPlugin

__all__ = ["MedicPlugin"]

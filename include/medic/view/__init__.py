"""medic's incidents view inside the Airflow 3 UI.

``medic.view.app`` is the FastAPI app the plugin mounts in the api-server; it is imported only
there (FastAPI costs about a second to import, and every task process loads the plugin).
"""

URL_PREFIX = "/medic"
PAGE = "/ui/incidents"

# The plugin's external view: a nav entry that shows the page inside the Airflow UI.
EXTERNAL_VIEW = {
    "name": "Incidents",
    "href": URL_PREFIX + PAGE,
    "destination": "nav",
    "url_route": "medic-incidents",
    "icon": URL_PREFIX + "/static/medic.svg",
}

"""AppTest: the entry point builds the navigation and names the API it talks to."""
from frontend.settings import get_settings
from tests.frontend.conftest import texts


def test_navigation_and_default_page(api, open_page):
    at = open_page()
    assert not at.exception
    assert [t.value for t in at.title] == ["Launch"]
    assert get_settings().api_url in texts(at.sidebar.caption)
    for page, title in (("runs", "Runs"), ("compare", "Compare"), ("geometry", "Geometry")):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, page
        assert at.title[0].value == title

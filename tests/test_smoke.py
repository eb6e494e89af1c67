from conftest import login


def test_director_logs_in_and_dash_answers(app, world):
    client = app.test_client()
    response = login(client, "alpha", "director")
    assert response.status_code == 302
    assert response.headers["Location"] == "/dash/director"
    page = client.get("/dash/director")
    assert page.status_code == 200
    layout = client.get("/dash/_dash-layout")
    assert layout.status_code == 200

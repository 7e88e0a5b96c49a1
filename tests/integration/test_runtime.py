import json

from backend.runtime import Runtime
from backend.settings import Settings


async def test_processes_on_one_database_share_one_embedded_live_server(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'm.db'}")
    assert settings.live_announce == tmp_path / "m.db.live"
    async with Runtime(settings) as first:
        assert json.loads(settings.live_announce.read_text())["url"] == first.live.url
        async with Runtime(settings) as second:
            assert second.live.url == first.live.url
            await second.live.set_state(1, status="paused")
        # The second only joined: the server still runs, with what the second wrote.
        assert (await first.live.state(1))["status"] == "paused"
    assert not settings.live_announce.exists()  # the starter stopped its server and withdrew it
    async with Runtime(settings) as third:
        assert await third.live.ping()

"""The fake Discord (tests/fakes) driven by a real, unmodified discord.py bot."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
from dataclasses import dataclass

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands
from discord.http import Route
from PIL import Image

from tests.fakes import DriverError, FakeDiscord, InteractionRejected, running_bot
from tests.fakes.state import FLAG_EPHEMERAL, FLAG_LOADING

SIZES = [
    app_commands.Choice(name="Square", value="1024x1024"),
    app_commands.Choice(name="Wide", value="1920x1072"),
]


def png(width: int = 64, height: int = 32, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


# ---- a tiny throwaway bot ---------------------------------------------------------------------


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"job:(?P<action>[a-z]+):(?P<job>\d+)",
):
    """A persistent button: found again by its custom_id after the bot restarts."""

    def __init__(self, action: str, job: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=action.title(),
                style=discord.ButtonStyle.primary,
                custom_id=f"job:{action}:{job}",
            )
        )
        self.action = action
        self.job = job

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: object
    ) -> JobButton:
        return cls(match["action"], int(match["job"]))  # type: ignore[index]

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = interaction.client
        assert isinstance(bot, FixtureBot)
        await interaction.response.send_message(
            f"{self.action} job {self.job} on instance {bot.instance}", ephemeral=True
        )


class PromptModal(discord.ui.Modal, title="Refine prompt"):
    prompt = discord.ui.TextInput(label="Prompt", custom_id="prompt", max_length=50)
    notes = discord.ui.TextInput(
        label="Notes", custom_id="notes", style=discord.TextStyle.paragraph, required=False
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            f"refined: {self.prompt.value} / {self.notes.value or '-'}"
        )


class FixtureBot(commands.Bot):
    def __init__(
        self,
        *,
        instance: int = 1,
        locked_channel: int = 0,
        sync: bool = True,
        intents: discord.Intents | None = None,
    ) -> None:
        super().__init__(
            command_prefix="!",
            intents=intents or discord.Intents.default(),
            chunk_guilds_at_startup=False,
            guild_ready_timeout=0.1,
        )
        self.instance = instance
        self.locked_channel = locked_channel
        self.sync_on_setup = sync
        self.errors: list[BaseException] = []
        self.inputs: list[bytes] = []
        self.slow_delay = 0.0
        self.synced: list[app_commands.AppCommand] = []

    async def setup_hook(self) -> None:
        self.add_dynamic_items(JobButton)
        add_commands(self)

        @self.tree.error
        async def on_error(
            interaction: discord.Interaction, error: app_commands.AppCommandError
        ) -> None:
            self.errors.append(getattr(error, "original", error))

        if self.sync_on_setup:
            self.synced = await self.tree.sync()


def add_commands(bot: FixtureBot) -> None:
    tree = bot.tree
    create = app_commands.Group(name="create", description="Create images")

    @create.command(name="gpt-image-2", description="Generate an image")
    @app_commands.choices(size=SIZES)
    async def gpt_image(
        interaction: discord.Interaction,
        prompt: str,
        size: app_commands.Choice[str],
        count: app_commands.Range[int, 1, 4] = 1,
        image: discord.Attachment | None = None,
    ) -> None:
        await interaction.response.defer(thinking=True)
        if image is not None:
            bot.inputs.append(await image.read())
        width, height = (int(x) // 16 for x in size.value.split("x"))
        out = discord.File(io.BytesIO(png(width, height)), filename="result.png")
        view = discord.ui.View(timeout=None)
        view.add_item(JobButton("upscale", interaction.id % 100000))
        await interaction.followup.send(
            f"{prompt} {size.value} x{count}", file=out, view=view, wait=True
        )

    tree.add_command(create)

    @tree.command(name="style", description="Pick a style")
    async def style(interaction: discord.Interaction, name: str) -> None:
        await interaction.response.send_message(f"style {name}")

    @style.autocomplete("name")
    async def style_choices(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        n = 30 if current == "many" else 3
        return [
            app_commands.Choice(name=f"{current}-{i}", value=f"{current}-{i}") for i in range(n)
        ]

    @tree.command(name="slow", description="Answers late")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(bot.slow_delay)
        await interaction.response.send_message("finally")

    @tree.command(name="later", description="Defers, then follows up")
    async def later(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await interaction.followup.send("done")

    @tree.command(name="upload", description="Uploads files")
    async def upload(interaction: discord.Interaction, count: int, megabytes: int) -> None:
        await interaction.response.defer()
        files = [
            discord.File(io.BytesIO(b"x" * (megabytes * 1024 * 1024 or 10)), filename=f"f{i}.bin")
            for i in range(count)
        ]
        await interaction.followup.send("files", files=files)

    @tree.command(name="secret", description="Ephemeral answer")
    async def secret(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("only you", ephemeral=True)

    @tree.command(name="refine", description="Opens a modal")
    async def refine(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(PromptModal())

    @tree.command(name="announce", description="Posts in the locked channel")
    async def announce(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        channel = bot.get_channel(bot.locked_channel)
        assert isinstance(channel, discord.TextChannel)
        try:
            await channel.send("hello everyone")
        except discord.Forbidden as exc:
            await interaction.followup.send(f"forbidden {exc.code}", ephemeral=True)

    @tree.command(name="dm-me", description="Sends you a DM")
    async def dm_me(interaction: discord.Interaction) -> None:
        await interaction.user.send("psst")
        await interaction.response.send_message("check your DMs", ephemeral=True)

    @tree.command(name="bad-button", description="Sends an invalid button")
    async def bad_button(interaction: discord.Interaction) -> None:
        view = discord.ui.View()
        view.add_item(discord.ui.Button(label="x", custom_id="c" * 101))
        await interaction.response.send_message("bad", view=view)

    @tree.command(name="progress", description="Edits its answer, then attaches a file")
    async def progress(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.edit_original_response(content="50%")
        await interaction.edit_original_response(
            content="100%", attachments=[discord.File(io.BytesIO(png(8, 8)), "final.png")]
        )
        again = await interaction.original_response()
        await interaction.followup.send(f"saw {again.content}", ephemeral=True)

    @tree.command(name="pick", description="Sends a select menu")
    async def pick(interaction: discord.Interaction) -> None:
        select: discord.ui.Select = discord.ui.Select(
            custom_id="flavour",
            max_values=2,
            options=[discord.SelectOption(label=x) for x in ("vanilla", "mint", "lemon")],
        )

        async def chosen(inner: discord.Interaction) -> None:
            await inner.response.edit_message(
                content=f"picked {', '.join(select.values)}", view=None
            )

        select.callback = chosen
        view = discord.ui.View()
        view.add_item(select)
        await interaction.response.send_message("choose", view=view)

    @tree.context_menu(name="Edit image")
    async def edit_image(interaction: discord.Interaction, message: discord.Message) -> None:
        source = await message.attachments[0].read()
        with Image.open(io.BytesIO(source)) as img:
            rotated = img.rotate(90, expand=True)
            buf = io.BytesIO()
            rotated.save(buf, format="PNG")
        await interaction.response.send_message(
            "edited", file=discord.File(io.BytesIO(buf.getvalue()), filename="edited.png")
        )


# ---- fixtures ---------------------------------------------------------------------------------


@dataclass
class Place:
    guild: int
    channel: int
    locked: int
    alice: int
    bob: int


@pytest.fixture
async def fake() -> FakeDiscord:
    async with FakeDiscord() as fake:
        yield fake  # type: ignore[misc]
        assert fake.crashes == []  # the fake's own handlers never blew up


@pytest.fixture
def place(fake: FakeDiscord) -> Place:
    guild = fake.add_guild("Test Guild")
    return Place(
        guild=guild,
        channel=fake.add_channel(guild, "general"),
        locked=fake.add_channel(guild, "announcements", bot_can_send=False),
        alice=fake.add_member(guild, "alice"),
        bob=fake.add_member(guild, "bob"),
    )


def make_bot(place: Place, **kwargs: object) -> FixtureBot:
    return FixtureBot(locked_channel=place.locked, **kwargs)  # type: ignore[arg-type]


# ---- tests ------------------------------------------------------------------------------------


async def test_sync_registers_commands_and_validates_them(fake: FakeDiscord, place: Place) -> None:
    async with running_bot(fake, make_bot(place)) as bot:
        names = {(c["name"], c["type"]) for c in fake.commands[None]}
        assert ("create", 1) in names and ("Edit image", 3) in names
        create = next(c for c in fake.commands[None] if c["name"] == "create")
        sub = create["options"][0]
        assert sub["name"] == "gpt-image-2" and sub["type"] == 1
        size = next(o for o in sub["options"] if o["name"] == "size")
        assert [c["value"] for c in size["choices"]] == ["1024x1024", "1920x1072"]
        assert {c.name for c in bot.synced} == {c["name"] for c in fake.commands[None]}
        assert bot.application_id == fake.application_id
        assert bot.get_guild(place.guild) is not None
        assert bot.get_channel(place.channel) is not None

        # Discord's own validation of command payloads (discord.py checks less).
        too_many = [{"name": f"c{i}", "value": f"v{i}"} for i in range(26)]
        bad = {
            "name": "bad",
            "description": "d" * 101,
            "type": 1,
            "options": [{"type": 3, "name": "x", "description": "x", "choices": too_many}],
        }
        with pytest.raises(discord.HTTPException) as info:
            await bot.http.bulk_upsert_global_commands(fake.application_id, [bad])
        assert info.value.status == 400 and info.value.code == 50035
        assert "options.0.choices" in str(info.value) and "description" in str(info.value)
        # Rejected syncs leave the registered commands alone.
        assert any(c["name"] == "create" for c in fake.commands[None])

        # Unknown routes answer 404 and are visible.
        with pytest.raises(discord.NotFound):
            await bot.http.request(Route("GET", "/sticker-packs"))
        assert [c.path for c in fake.unknown_calls] == ["/api/v10/sticker-packs"]
    put = [c for c in fake.calls if c.method == "PUT" and c.path.endswith("/commands")]
    assert put[0].status == 200


async def test_slash_deferred_followup_with_file(fake: FakeDiscord, place: Place) -> None:
    async with running_bot(fake, make_bot(place)) as bot:
        source = png(40, 20)
        h = await fake.slash(
            place.guild,
            place.channel,
            place.alice,
            "create gpt-image-2",
            options={"prompt": "a red fox", "size": "1920x1072", "count": 2},
            attachments={"image": ("in put.png", source, "image/png")},
        )
        assert (await h.response())["type"] == 5 and h.deferred and not h.ephemeral
        followup = await h.wait_for_followup(1)
        assert followup["content"] == "a red fox 1920x1072 x2"
        # The first followup after a "thinking" defer fills in the loading message.
        assert int(followup["id"]) == h.record.original_message_id
        assert not followup["flags"] & FLAG_LOADING
        attachment = followup["attachments"][0]
        assert attachment["filename"] == "result.png"
        assert attachment["content_type"] == "image/png"
        assert (attachment["width"], attachment["height"]) == (120, 67)
        data = fake.attachment_bytes(attachment)
        assert image_size(data) == (120, 67) and attachment["size"] == len(data)
        async with aiohttp.ClientSession() as session, session.get(attachment["url"]) as resp:
            assert resp.status == 200 and await resp.read() == data
        assert bot.inputs == [source]  # the bot downloaded the user's upload from the fake CDN
        assert [m["id"] for m in fake.channel_messages(place.channel)] == [followup["id"]]
        button = followup["components"][0]["components"][0]
        assert button["custom_id"].startswith("job:upscale:")

        # What the Discord client would refuse to send is refused by the driver too.
        with pytest.raises(DriverError, match="registered choices"):
            await fake.slash(
                place.guild,
                place.channel,
                place.alice,
                "create gpt-image-2",
                options={"prompt": "x", "size": "999x999"},
            )
        with pytest.raises(DriverError, match="range"):
            await fake.slash(
                place.guild,
                place.channel,
                place.alice,
                "create gpt-image-2",
                options={"prompt": "x", "size": "1024x1024", "count": 9},
            )
        with pytest.raises(DriverError, match="required option 'prompt'"):
            await fake.slash(
                place.guild,
                place.channel,
                place.alice,
                "create gpt-image-2",
                options={"size": "1024x1024"},
            )
        with pytest.raises(DriverError, match="no registered command"):
            await fake.slash(place.guild, place.channel, place.alice, "imagine")
    assert not fake.failed_calls


async def test_autocomplete_choices_and_limit(fake: FakeDiscord, place: Place) -> None:
    async with running_bot(fake, make_bot(place)) as bot:
        choices = await fake.autocomplete(
            place.guild,
            place.channel,
            place.alice,
            "style",
            options={"name": "sun"},
            focused="name",
        )
        assert choices == [{"name": f"sun-{i}", "value": f"sun-{i}"} for i in range(3)]
        with pytest.raises(InteractionRejected) as info:
            await fake.autocomplete(
                place.guild,
                place.channel,
                place.alice,
                "style",
                options={"name": "many"},
                focused="name",
            )
        assert info.value.status == 400 and info.value.code == 50035
        assert info.value.calls[0].response["errors"]["data"]["choices"]["_errors"][0]["code"] == (
            "BASE_TYPE_MAX_LENGTH"
        )
        assert not bot.errors  # discord.py only logs autocomplete failures


async def test_late_initial_response_is_unknown_interaction(
    fake: FakeDiscord, place: Place
) -> None:
    fake.ack_deadline = 0.3
    async with running_bot(fake, make_bot(place)) as bot:
        bot.slow_delay = 0.5
        h = await fake.slash(place.guild, place.channel, place.alice, "slow")
        with pytest.raises(InteractionRejected) as info:
            await h.response(timeout=3)
        assert info.value.status == 404 and info.value.code == 10062
        await fake.wait_for(lambda: bot.errors)
        assert isinstance(bot.errors[0], discord.NotFound) and bot.errors[0].code == 10062
        assert fake.channel_messages(place.channel) == []


async def test_followup_after_token_expiry_fails(fake: FakeDiscord, place: Place) -> None:
    async with running_bot(fake, make_bot(place)) as bot:
        created = discord.utils.utcnow() - dt.timedelta(minutes=16)
        h = await fake.slash(place.guild, place.channel, place.alice, "later", created_at=created)
        assert discord.utils.snowflake_time(h.id) < discord.utils.utcnow() - dt.timedelta(
            minutes=15
        )
        # The 3 s rule counts from the dispatch, so the defer itself is accepted...
        assert (await h.response())["type"] == 5
        # ...but the token is older than 15 minutes.
        rejected = await h.wait_for_rejection()
        assert (rejected.status, rejected.error_code) == (401, 50027)
        await fake.wait_for(lambda: bot.errors)
        assert isinstance(bot.errors[0], discord.HTTPException) and bot.errors[0].code == 50027

        # 14m50s old: still fine.
        fresh = discord.utils.utcnow() - dt.timedelta(minutes=14, seconds=50)
        ok = await fake.slash(place.guild, place.channel, place.alice, "later", created_at=fresh)
        assert (await ok.wait_for_followup())["content"] == "done"


async def test_upload_limits(fake: FakeDiscord, place: Place) -> None:
    async with running_bot(fake, make_bot(place)):
        big = await fake.slash(
            place.guild, place.channel, place.alice, "upload", options={"count": 1, "megabytes": 11}
        )
        assert big.payload["attachment_size_limit"] == fake.upload_limit == 10 * 1024 * 1024
        rejected = await big.wait_for_rejection()
        assert (rejected.status, rejected.error_code) == (413, 40005)

        many = await fake.slash(
            place.guild, place.channel, place.alice, "upload", options={"count": 11, "megabytes": 0}
        )
        rejected = await many.wait_for_rejection()
        assert (rejected.status, rejected.error_code) == (400, 50035)
        assert len(rejected.files) == 11

        ten = await fake.slash(
            place.guild, place.channel, place.alice, "upload", options={"count": 10, "megabytes": 0}
        )
        assert len((await ten.wait_for_followup())["attachments"]) == 10


async def test_ephemeral_message_stays_out_of_history(fake: FakeDiscord, place: Place) -> None:
    async with running_bot(fake, make_bot(place)):
        h = await fake.slash(place.guild, place.channel, place.alice, "secret")
        response = await h.response()
        assert response["type"] == 4 and response["data"]["flags"] & FLAG_EPHEMERAL
        original = await h.original()
        assert h.ephemeral and original["content"] == "only you"
        assert original["flags"] & FLAG_EPHEMERAL
        assert fake.channel_messages(place.channel) == []
        assert fake.message(int(original["id"]))["content"] == "only you"


async def test_button_click_after_bot_restart(fake: FakeDiscord, place: Place) -> None:
    async with running_bot(fake, make_bot(place, instance=1)):
        h = await fake.slash(
            place.guild,
            place.channel,
            place.alice,
            "create gpt-image-2",
            options={"prompt": "p", "size": "1024x1024"},
        )
        message = await h.wait_for_followup()
    command_ids = {c["id"] for c in fake.commands[None]}
    custom_id = message["components"][0]["components"][0]["custom_id"]

    # A brand new bot process: same fake, same stored messages; it does not even re-sync.
    async with running_bot(fake, make_bot(place, instance=2, sync=False)):
        with pytest.raises(DriverError, match="no component"):
            await fake.click(int(message["id"]), "nope", place.bob)
        click = await fake.click(int(message["id"]), custom_id, place.bob)
        response = await click.response()
        job = custom_id.rsplit(":", 1)[1]
        assert response["data"]["content"] == f"upscale job {job} on instance 2"
        assert click.ephemeral
    assert {c["id"] for c in fake.commands[None]} == command_ids
    assert fake.gateway.identifies == 2


async def test_modal_submit(fake: FakeDiscord, place: Place) -> None:
    async with running_bot(fake, make_bot(place)):
        h = await fake.slash(place.guild, place.channel, place.alice, "refine")
        assert (await h.response())["type"] == 9
        assert h.modal is not None and h.modal["title"] == "Refine prompt"
        with pytest.raises(DriverError, match="required"):
            await fake.submit_modal(h, {"notes": "n"})
        with pytest.raises(DriverError, match="length"):
            await fake.submit_modal(h, {"prompt": "x" * 51})
        submitted = await fake.submit_modal(h, {"prompt": "a cat in a hat"})
        response = await submitted.response()
        assert response["data"]["content"] == "refined: a cat in a hat / -"
        assert [m["content"] for m in fake.channel_messages(place.channel)] == [
            "refined: a cat in a hat / -"
        ]


async def test_message_context_menu(fake: FakeDiscord, place: Place) -> None:
    async with running_bot(fake, make_bot(place)):
        posted = await fake.post_message(
            place.channel, place.alice, "look", attachments=[("cat.png", png(30, 10))]
        )
        h = await fake.message_command(
            place.guild, place.channel, place.bob, "Edit image", int(posted["id"])
        )
        original = await h.original()
        assert original["content"] == "edited"
        assert original["interaction_metadata"]["target_message_id"] == posted["id"]
        edited = fake.attachment_bytes(original["attachments"][0])
        assert image_size(edited) == (10, 30)


async def test_missing_permissions_dm_and_component_limits(fake: FakeDiscord, place: Place) -> None:
    async with running_bot(fake, make_bot(place)):
        h = await fake.slash(place.guild, place.channel, place.alice, "announce")
        followup = await h.wait_for_followup()
        assert followup["content"] == "forbidden 50013"
        assert followup["flags"] & FLAG_EPHEMERAL
        denied = [
            c for c in fake.failed_calls if c.path.endswith(f"/channels/{place.locked}/messages")
        ]
        assert [(c.status, c.error_code) for c in denied] == [(403, 50013)]
        assert fake.channel_messages(place.locked) == []

        dm = await fake.slash(place.guild, place.channel, place.bob, "dm-me")
        await dm.response()
        assert [m["content"] for m in fake.dm_messages(place.bob)] == ["psst"]

        bad = await fake.slash(place.guild, place.channel, place.alice, "bad-button")
        with pytest.raises(InteractionRejected) as info:
            await bad.response()
        assert info.value.code == 50035
        assert "custom_id" in json.dumps(info.value.calls[0].response)


async def test_second_initial_response_is_rejected(fake: FakeDiscord, place: Place) -> None:
    async with running_bot(fake, make_bot(place)):
        h = await fake.slash(place.guild, place.channel, place.alice, "secret")
        await h.response()
        url = f"{fake.api_base}/interactions/{h.id}/{h.token}/callback"
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json={"type": 4, "data": {"content": "again"}}) as resp:
                assert resp.status == 400
                assert resp.headers["Content-Type"] == "application/json"
                assert (await resp.json())["code"] == 40060
            async with session.get(f"{fake.api_base}/users/@me") as resp:
                assert resp.status == 401


async def test_world_changes_reach_a_running_bot_and_gateway_resumes(
    fake: FakeDiscord, place: Place
) -> None:
    # GUILD_MEMBER_ADD needs the (privileged) members intent.
    bot = make_bot(place, intents=discord.Intents(guilds=True, members=True))
    async with running_bot(fake, bot):
        guild = bot.get_guild(place.guild)
        assert guild is not None and guild.me is not None
        assert guild.get_member(place.alice) is None  # no presences intent: only the bot's member
        role = fake.add_role(place.guild, "artists", permissions=1 << 15)
        carol = fake.add_member(place.guild, "carol", roles=[role])
        other = fake.add_guild("Second Guild")
        await fake.wait_for(
            lambda: guild.get_role(role) and guild.get_member(carol) and bot.get_guild(other)
        )
        member = guild.get_member(carol)
        assert member is not None and [r.id for r in member.roles[1:]] == [role]

        # Op 7 RECONNECT: the bot comes back with RESUME at READY's resume_gateway_url.
        await fake.gateway.reconnect_request()
        await fake.wait_for(lambda: any(p.get("op") == 6 for p in fake.gateway.received))
        await fake.wait_for(lambda: fake.gateway.connected)
        h = await fake.slash(place.guild, place.channel, place.alice, "secret")
        assert (await h.response())["type"] == 4
    assert fake.gateway.identifies == 1
    # The fake spoke the transport compression discord.py asked for (zlib-stream here, or
    # zstd-stream when a zstd module is importable).
    expected = discord.utils._ActiveDecompressionContext.COMPRESSION_TYPE
    assert fake.gateway.compressions == [expected, expected]


async def test_startup_failures_propagate(fake: FakeDiscord, place: Place) -> None:
    class Broken(FixtureBot):
        async def setup_hook(self) -> None:
            raise RuntimeError("setup exploded")

    with pytest.raises(RuntimeError, match="setup exploded"):
        async with running_bot(fake, Broken()):
            pass

    fake.enabled_privileged_intents = 0  # nothing switched on in the "developer portal"
    bot = make_bot(place, intents=discord.Intents(guilds=True, message_content=True))
    with pytest.raises(discord.PrivilegedIntentsRequired):
        async with running_bot(fake, bot):
            pass
    assert Route.BASE == "https://discord.com/api/v10"  # endpoints restored


def test_zstd_stream_compression_round_trip() -> None:
    zstandard = pytest.importorskip("zstandard")
    from tests.fakes.gateway import _Compressor

    compressor = _Compressor("zstd-stream")
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    for text in ('{"op":10}', '{"op":11}'):
        packed = compressor.pack(text)
        assert isinstance(packed, bytes) and decompressor.decompress(packed).decode() == text


async def test_select_menu_updates_the_message(fake: FakeDiscord, place: Place) -> None:
    async with running_bot(fake, make_bot(place)):
        h = await fake.slash(place.guild, place.channel, place.alice, "pick")
        message = await h.original()
        with pytest.raises(DriverError, match="not an option"):
            await fake.select(int(message["id"]), "flavour", ["chocolate"], place.alice)
        with pytest.raises(DriverError, match=r"takes 1\.\.2 values"):
            await fake.select(
                int(message["id"]), "flavour", ["mint", "lemon", "vanilla"], place.bob
            )
        chosen = await fake.select(int(message["id"]), "flavour", ["mint", "lemon"], place.bob)
        assert (await chosen.response())["type"] == 7  # UPDATE_MESSAGE
        updated = fake.message(int(message["id"]))
        assert updated["content"] == "picked mint, lemon" and updated["components"] == []
        assert updated["edited_timestamp"] is not None


async def test_channel_rest_routes(fake: FakeDiscord, place: Place) -> None:
    no_files = fake.add_channel(place.guild, "no-files", bot_can_attach=False)
    async with running_bot(fake, make_bot(place)) as bot:
        channel = bot.get_channel(place.channel)
        assert isinstance(channel, discord.TextChannel)
        first = await channel.send("one")
        await first.edit(content="two")
        reply = await first.reply("three", file=discord.File(io.BytesIO(png()), "r.png"))
        assert reply.reference is not None and reply.reference.message_id == first.id
        assert reply.attachments[0].width == 64
        await first.add_reaction("\N{THUMBS UP SIGN}")
        fetched = await channel.fetch_message(first.id)
        assert fetched.content == "two" and fetched.edited_at is not None
        assert fetched.reactions[0].count == 1 and fetched.reactions[0].me
        history = [m.content async for m in channel.history(limit=10)]
        assert history == ["three", "two"]
        older = [m.content async for m in channel.history(limit=10, before=reply)]
        assert older == ["two"]
        await reply.delete()
        assert [m["content"] for m in fake.channel_messages(place.channel)] == ["two"]

        # A user's message reaches the bot without content: no Message Content intent.
        posted = await fake.post_message(place.channel, place.alice, "hello bot")
        await fake.wait_for(lambda: any(m.id == int(posted["id"]) for m in bot.cached_messages))
        cached = next(m for m in bot.cached_messages if m.id == int(posted["id"]))
        assert cached.content == "" and cached.author.id == place.alice
        with pytest.raises(discord.Forbidden) as info:
            await channel.get_partial_message(int(posted["id"])).edit(content="hijack")
        assert info.value.code == 50005

        files_channel = bot.get_channel(no_files)
        assert isinstance(files_channel, discord.TextChannel)
        await files_channel.send("text is fine")
        with pytest.raises(discord.Forbidden) as info:
            await files_channel.send(file=discord.File(io.BytesIO(b"x"), "x.txt"))
        assert info.value.code == 50013
        with pytest.raises(discord.HTTPException) as info:
            await channel.send("")
        assert info.value.code == 50006
        with pytest.raises(discord.HTTPException) as info:
            await channel.send("x" * 2001)
        assert info.value.code == 50035


def test_component_and_modal_limits() -> None:
    from tests.fakes.errors import ApiError
    from tests.fakes.validation import validate_message, validate_modal

    def button(i: int) -> dict[str, object]:
        return {"type": 2, "style": 1, "label": "b", "custom_id": f"b{i}"}

    row = {"type": 1, "components": [button(i) for i in range(5)]}
    validate_message({"components": [row]})
    too_many_buttons = {"type": 1, "components": [button(i) for i in range(6)]}
    rows = [{"type": 1, "components": [button(i)]} for i in range(6)]
    text_input = {"type": 4, "style": 1, "label": "L", "custom_id": "t"}
    for payload in (
        {"components": [too_many_buttons]},
        {"components": rows},
        {"components": [{"type": 1, "components": [{**button(0), "custom_id": "c" * 101}]}]},
        {"components": [{"type": 1, "components": [button(0), button(0)]}]},
    ):
        with pytest.raises(ApiError) as info:
            validate_message({"content": "x", **payload})
        assert info.value.code == 50035
    for modal in (
        {
            "custom_id": "m",
            "title": "t" * 46,
            "components": [{"type": 1, "components": [text_input]}],
        },
        {
            "custom_id": "m",
            "title": "t",
            "components": [{"type": 1, "components": [text_input]}] * 6,
        },
        {
            "custom_id": "m",
            "title": "t",
            "components": [{"type": 1, "components": [{**text_input, "custom_id": "c" * 101}]}],
        },
    ):
        with pytest.raises(ApiError) as info:
            validate_modal(modal)
        assert info.value.code == 50035


async def test_edits_of_original_and_dm_commands(fake: FakeDiscord, place: Place) -> None:
    async with running_bot(fake, make_bot(place)):
        h = await fake.slash(place.guild, place.channel, place.alice, "progress")
        final = await h.wait_for_original(lambda m: m["content"] == "100%")
        assert final["flags"] & FLAG_EPHEMERAL and h.ephemeral
        assert [a["filename"] for a in final["attachments"]] == ["final.png"]
        assert (await h.wait_for_followup())["content"] == "saw 100%"
        assert fake.channel_messages(place.channel) == []

        # The same global command from the user's DM with the bot.
        dm = await fake.slash(None, None, place.bob, "secret")
        assert dm.payload["context"] == 1 and "user" in dm.payload
        assert (await dm.response())["data"]["content"] == "only you"


async def test_bot_crash_fails_waits_fast(fake: FakeDiscord, place: Place) -> None:
    with pytest.raises(discord.ConnectionClosed):
        async with running_bot(fake, make_bot(place)):
            session = fake.gateway.current
            assert session is not None and session.connection is not None
            await session.connection.close(4004, "Authentication failed.")
            with pytest.raises(RuntimeError, match="start task died") as info:
                await fake.wait_for(lambda: False, timeout=5)
            assert isinstance(info.value.__cause__, discord.ConnectionClosed)


async def test_age_restricted_channels_and_threads(fake: FakeDiscord, place: Place) -> None:
    from tests.fakes.state import SEND_MESSAGES_IN_THREADS

    late = fake.add_channel(place.guild, "after-dark", nsfw=True)
    async with running_bot(fake, make_bot(place)) as bot:
        adult = fake.add_thread(late, "late talk", owner_id=place.alice)
        plain = fake.add_thread(place.channel, "day talk")
        await fake.wait_for(lambda: bot.get_channel(adult) and bot.get_channel(plain))
        guild = bot.get_guild(place.guild)
        assert guild is not None
        thread = guild.get_thread(adult)
        assert isinstance(thread, discord.Thread) and thread.parent_id == late
        assert thread.is_nsfw() and thread.owner_id == place.alice
        day = guild.get_thread(plain)
        assert day is not None and not day.is_nsfw()
        # A thread has its parent's permissions; sending there is Send Messages in Threads.
        sent = await day.send("hello thread")
        assert fake.channel_messages(plain)[-1]["id"] == str(sent.id)
        fake.set_bot_channel_permissions(place.channel, deny=SEND_MESSAGES_IN_THREADS)
        with pytest.raises(discord.Forbidden):
            await day.send("not any more")
        # The age restriction can change; the bot hears of it.
        fake.set_channel_nsfw(late, False)
        await fake.wait_for(lambda: not thread.is_nsfw())
    # A bot starting later finds the active threads in GUILD_CREATE.
    async with running_bot(fake, make_bot(place)) as bot:
        await fake.wait_for(lambda: bot.get_guild(place.guild))
        guild = bot.get_guild(place.guild)
        assert guild is not None and {t.id for t in guild.threads} == {adult, plain}

"""The shipped JSON Schemas: valid Draft 2020-12, found installed or in a checkout, and true to records.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from dataprep import schemas
from dataprep.errors import InputError, UsageProblem
from dataprep.records import from_messages, make_record
from dataprep.schemas import SCHEMA_NAMES, load_schema, schema_path
from tests.conftest import FIXTURES, REPO, invoke

CANONICAL = Draft202012Validator(load_schema("canonical"))
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"


def errors(validator: Draft202012Validator, record: object) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(record))


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_each_shipped_schema_is_valid_draft_2020_12(name: str) -> None:
    document = load_schema(name)
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == DRAFT_2020_12
    assert document["$id"] == f"urn:dataprep:schema:{name}"
    assert document["title"] and document["description"]
    assert schema_path(name) == REPO / "schemas" / f"{name}.schema.json"


def test_schema_folder_holds_exactly_the_shipped_names() -> None:
    assert sorted(p.name for p in (REPO / "schemas").iterdir()) == sorted(f"{n}.schema.json" for n in SCHEMA_NAMES)


def test_wheel_carries_the_schemas_inside_the_package() -> None:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")  # no tomllib: Python 3.10 is supported
    section = text.split("[tool.hatch.build.targets.wheel.force-include]", 1)[1].split("\n[", 1)[0]
    assert '"schemas" = "dataprep/schemas"' in section.splitlines()


def test_installed_package_schemas_win_over_the_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    packaged = tmp_path / "dataprep" / "schemas"
    packaged.mkdir(parents=True)
    (packaged / "alpaca.schema.json").write_text('{"type": "object"}', encoding="utf-8")
    monkeypatch.setattr(schemas.resources, "files", lambda package: tmp_path / package)
    assert schema_path("alpaca") == packaged / "alpaca.schema.json"
    assert load_schema("alpaca") == {"type": "object"}
    assert schema_path("sharegpt") == REPO / "schemas" / "sharegpt.schema.json"


def test_every_canonical_property_is_documented() -> None:
    document = load_schema("canonical")
    assert document["additionalProperties"] is False
    assert all(prop.get("description") for prop in document["properties"].values())
    roles = document["properties"]["roles"]["description"]
    assert "even position" in roles and "observation" in roles and "function_call" in roles


def test_a_schema_by_path(tmp_path: Path) -> None:
    path = tmp_path / "rows.schema.json"
    path.write_text('{"type": "object", "required": ["text"]}', encoding="utf-8")
    assert schema_path(str(path)) == path
    assert load_schema(path) == {"type": "object", "required": ["text"]}


def test_unknown_name_lists_the_shipped_ones() -> None:
    with pytest.raises(UsageProblem) as info:
        schema_path("alpacca")
    assert str(info.value) == (
        "unknown schema 'alpacca'; use one of alpaca, sharegpt, messages, canonical or a path to a .json file")
    assert info.value.exit_code == 2


def test_missing_schema_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.json: no such schema file$"):
        schema_path(str(tmp_path / "nope.json"))


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ('{"type": "strnig"}', UsageProblem, r"not a valid JSON Schema: /type: 'strnig' is not valid"),
        ('{"properties": {"a": {"minLength": -1}}}', UsageProblem,
         r"not a valid JSON Schema: /properties/a/minLength: -1 is less than the minimum of 0"),
        ("[1, 2]", UsageProblem, r"not a valid JSON Schema: expected an object, got list"),
        ('{\n  "type": "object",\n}', InputError, r"bad\.schema\.json:3: schema is not valid JSON at column 1"),
    ],
)
def test_broken_schema_files(tmp_path: Path, text: str, error: type[Exception], message: str) -> None:
    path = tmp_path / "bad.schema.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(error, match=message):
        load_schema(str(path))


def test_a_schema_keeps_its_own_draft(tmp_path: Path) -> None:
    """Draft 7's array form of ``items`` is not valid 2020-12; a declared draft must be honoured."""
    path = tmp_path / "old.schema.json"
    path.write_text(json.dumps({"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "string"}]}))
    assert load_schema(str(path))["items"] == [{"type": "string"}]


# --- the canonical schema is the canonical record ---------------------------------------------------------------


def test_library_records_validate() -> None:
    records = [
        make_record(prompt="Hi", response="Hello"),
        make_record(prefix="sys", prompt="p", query="q", response="r", history=[["u", "a"]], meta={"k": [1]}, id="x1"),
        from_messages(
            [{"role": "user", "content": "Weather in Oslo?"},
             {"role": "assistant", "content": None,
              "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
             {"role": "tool", "content": '{"t": -3}'},
             {"role": "assistant", "content": "It is -3 °C."}],
            tools='[{"name": "get_weather"}]',
        ),
        {**make_record(prompt="p", response="r"), "len_bucket": 3, "split": "validation"},
    ]
    assert records[2]["roles"] == ["user", "function_call", "observation", "assistant"]
    for record in records:
        assert errors(CANONICAL, record) == []


def test_canonical_fixture_validates() -> None:
    lines = (FIXTURES / "data" / "canonical.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 20
    for line in lines:
        assert errors(CANONICAL, json.loads(line)) == []


@given(
    text=st.text(max_size=40),
    history=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)).map(list), max_size=3),
    meta=st.none() | st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), max_size=2),
)
@settings(max_examples=60, deadline=None)
def test_any_made_record_validates(text: str, history: list[list[str]], meta: dict | None) -> None:
    record = make_record(prefix=text[:5], prompt=text, query=text[::-1], response=text + ".", history=history, meta=meta)
    assert errors(CANONICAL, record) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"roles": ["user", "bot"]}, ["roles/1: 'bot' is not one of ['user', 'observation', 'assistant', 'function_call']"]),
        ({"roles": ["user"]}, ["roles: ['user'] is too short"]),
        ({"roles": "user,assistant"}, ["roles: 'user,assistant' is not of type 'array'"]),
        ({"history": [["only one"]]}, ["history/0: ['only one'] is too short"]),
        ({"history": [["a", "b", "c"]]}, ["history/0: Expected at most 2 items but found 1 extra: 'c'"]),
        ({"id": ""}, ["id: '' should be non-empty"]),
        ({"len_bucket": -1}, ["len_bucket: -1 is less than the minimum of 0"]),
        ({"tools": [{"name": "f"}]}, ["tools: [{'name': 'f'}] is not of type 'string'"]),
        ({"instruction": "x"}, [": Additional properties are not allowed ('instruction' was unexpected)"]),
    ],
)
def test_bad_canonical_records_do_not_validate(change: dict, expected: list[str]) -> None:
    record = {**make_record(prompt="p", response="r"), **change}
    assert errors(CANONICAL, record) == expected


def test_canonical_requires_every_core_field() -> None:
    assert errors(CANONICAL, {}) == [f": '{name}' is a required property" for name in
                                     sorted(["history", "id", "prefix", "prompt", "query", "response"])]


# --- source-format schemas -----------------------------------------------------------------------------------------


def test_sharegpt_turns_either_from_value_or_role_content() -> None:
    sharegpt = Draft202012Validator(load_schema("sharegpt"))
    ok = {"conversations": [{"role": "user", "content": "hi"}, {"from": "gpt", "value": "hello"}], "tools": "[]"}
    assert errors(sharegpt, ok) == []
    bad = {"conversations": [{"from": "bot", "value": "hi"}, {"role": "gpt", "content": 1}, {}], "tools": []}
    assert errors(sharegpt, bad) == [
        "conversations/0/from: 'bot' is not one of ['human', 'gpt', 'system', 'function_call', 'observation']",
        "conversations/1/content: 1 is not of type 'string'",
        "conversations/1/role: 'gpt' is not one of "
        "['user', 'assistant', 'system', 'function_call', 'observation', 'tool']",
        "conversations/2: 'content' is a required property",
        "conversations/2: 'role' is a required property",
        "tools: [] is not of type 'string'",
    ]


def test_messages_content_may_be_null_only_on_a_tool_call() -> None:
    messages = Draft202012Validator(load_schema("messages"))
    call = {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}
    assert errors(messages, {"messages": [{"role": "user", "content": "x"}, call]}) == []
    assert errors(messages, {"messages": [{"role": "user", "content": None}, {"role": "assistant"}]}) == [
        "messages/0/content: None is not of type 'string'",
        "messages/1: 'content' is a required property",
    ]
    assert errors(messages, {"messages": [{"role": "assistant", "content": None, "tool_calls": [{}]}]}) == [
        "messages/0/tool_calls/0: 'function' is a required property"]


def test_alpaca_history_and_optional_input() -> None:
    alpaca = Draft202012Validator(load_schema("alpaca"))
    assert errors(alpaca, {"instruction": "i", "output": "o", "history": [], "category": 1, "id": 7}) == []
    assert errors(alpaca, {"instruction": "i", "output": "o", "history": [["u"]], "system": None}) == [
        "history/0: ['u'] is too short", "system: None is not of type 'string'"]


# --- schemas never fetch; their evaluation is bounded (issue 10, items 2 and 7) ----------------------------------


def write_schema(tmp_path: Path, document: object, name: str = "s.schema.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.fixture
def http_server(tmp_path: Path):
    """A real HTTP server on localhost serving a schema that would reject every record; it counts requests."""
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            hits.append(self.path)
            body = b'{"not": {}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_a_remote_ref_is_refused_at_load_and_never_fetched(tmp_path: Path, http_server) -> None:
    url, hits = http_server
    path = write_schema(tmp_path, {"properties": {"prompt": {"$ref": f"{url}/s.json"}}})
    with pytest.raises(UsageProblem) as info:
        load_schema(path)
    assert str(info.value) == (f"{path}: /properties/prompt/$ref: '{url}/s.json' is a remote reference; "
                               "dataprep never fetches schemas (copy it under $defs)")
    assert info.value.exit_code == 2
    assert hits == []


def test_validate_with_a_remote_ref_is_exit_2_before_any_record(tmp_path: Path, http_server) -> None:
    url, hits = http_server
    path = write_schema(tmp_path, {"properties": {"prompt": {"$ref": f"{url}/s.json"}}})
    result = invoke("validate", FIXTURES / "data" / "canonical.jsonl", "--schema", path)
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith(f"Error: {path}: /properties/prompt/$ref: '{url}/s.json' is a remote reference")
    assert hits == []


@pytest.mark.parametrize(
    ("document", "pointer", "ref", "message"),
    [
        ({"properties": {"prompt": {"$ref": "file:///etc/passwd"}}}, "/properties/prompt", "file:///etc/passwd",
         "is a file reference; dataprep follows none (copy the referenced schema under $defs)"),
        # a relative ref under a file: $id would read a schema outside the schema's folder
        ({"$id": "file:///tmp/schemas/s.json", "properties": {"p": {"$ref": "../outside.json"}}}, "/properties/p",
         "../outside.json", "is a file reference; dataprep follows none (copy the referenced schema under $defs)"),
        ({"items": {"$ref": "other.schema.json"}}, "/items", "other.schema.json",
         "does not resolve inside this schema or a shipped one (urn:dataprep:schema:{alpaca,sharegpt,messages,"
         "canonical}); nothing else is looked up"),
        ({"$defs": {"a": {"type": "string"}}, "properties": {"p": {"$ref": "#/$defs/b"}}}, "/properties/p",
         "#/$defs/b", "does not resolve inside this schema or a shipped one"),
        ({"properties": {"p": {"$ref": "https://example.com/s.json"}}}, "/properties/p", "https://example.com/s.json",
         "is a remote reference; dataprep never fetches schemas"),
    ],
)
def test_refs_outside_the_document_are_usage_errors(tmp_path: Path, document: dict, pointer: str, ref: str,
                                                     message: str) -> None:
    path = write_schema(tmp_path, document)
    with pytest.raises(UsageProblem) as info:
        load_schema(path)
    assert str(info.value).startswith(f"{path}: {pointer}/$ref: {ref!r} {message}")


def test_a_file_ref_to_a_real_sibling_schema_is_not_read(tmp_path: Path) -> None:
    """The sibling exists and would reject every record; it must not be opened, let alone applied."""
    write_schema(tmp_path, {"not": {}}, "sibling.schema.json")
    path = write_schema(tmp_path, {"$id": (tmp_path / "s.schema.json").as_uri(),
                                   "properties": {"prompt": {"$ref": "sibling.schema.json"}}})
    result = invoke("validate", FIXTURES / "data" / "canonical.jsonl", "--schema", path)
    assert (result.exit_code, result.stdout) == (2, "")
    assert "'sibling.schema.json' is a file reference" in result.stderr


def test_refs_to_shipped_schemas_and_metaschemas_resolve_locally(tmp_path: Path) -> None:
    path = write_schema(tmp_path, {
        "allOf": [{"$ref": "urn:dataprep:schema:canonical"}],
        "properties": {"meta": {"properties": {"schema": {"$ref": "https://json-schema.org/draft/2020-12/schema"}}}},
    })
    load_schema(path)
    records = tmp_path / "rows.jsonl"
    good = make_record(prompt="p", response="r", meta={"schema": {"type": "string"}})
    bad = make_record(prompt="p", response="r", meta={"schema": {"type": "strnig"}})
    records.write_text(json.dumps(good) + "\n" + json.dumps({**bad, "extra": 1}) + "\n", encoding="utf-8")
    result = invoke("validate", records, "--schema", path)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == f"{records}:2: /: Additional properties are not allowed ('extra' was unexpected)"
    assert f"{records}:2: /meta/schema/type: 'strnig' is not valid under any of the given schemas" in result.stdout


@pytest.mark.parametrize(
    ("document", "loop"),
    [
        ({"$ref": "#"}, "/ -> /"),
        ({"$defs": {"a": {"allOf": [{"$ref": "#/$defs/b"}]}, "b": {"not": {"$ref": "#/$defs/a"}}},
          "properties": {"prompt": {"$ref": "#/$defs/a"}}},
         "/$defs/a -> /$defs/a/allOf/0 -> /$defs/b -> /$defs/b/not -> /$defs/a"),
        ({"$defs": {"a": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"},
         "/$defs/a -> /$defs/a/anyOf/1 -> /$defs/a"),
    ],
)
def test_self_and_mutually_recursive_refs_are_refused_cleanly(tmp_path: Path, document: dict, loop: str) -> None:
    path = write_schema(tmp_path, document)
    with pytest.raises(UsageProblem) as info:
        load_schema(path)
    assert str(info.value) == (f"{path}: {loop}: the schema refers back to itself without going into the data, "
                               "so checking a record would never end")
    result = invoke("validate", FIXTURES / "data" / "canonical.jsonl", "--schema", path)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", f"Error: {info.value}\n")


def test_recursion_through_the_data_is_allowed(tmp_path: Path) -> None:
    """A tree schema refers to itself one level down the data; every record bounds it, so it is fine."""
    path = write_schema(tmp_path, {
        "$defs": {"node": {"type": "object", "required": ["v"],
                           "properties": {"v": {"type": "integer"}, "kids": {"items": {"$ref": "#/$defs/node"}}}}},
        "properties": {"meta": {"$ref": "#/$defs/node"}},
    })
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"meta": {"v": 1, "kids": [{"v": 2, "kids": [{"v": "3"}]}]}}) + "\n", encoding="utf-8")
    result = invoke("validate", rows, "--schema", path)
    assert result.exit_code == 1
    assert result.stdout == f"{rows}:1: /meta/kids/0/kids/0/v: '3' is not of type 'integer'\n"


def anyof_bomb(levels: int) -> dict:
    """The report's payload: level i is anyOf of two refs to level i-1, so one value can take 2**levels checks."""
    defs: dict = {"d0": {"type": "integer"}}
    for i in range(1, levels + 1):
        defs[f"d{i}"] = {"anyOf": [{"$ref": f"#/$defs/d{i - 1}"}, {"$ref": f"#/$defs/d{i - 1}"}]}
    return {"$defs": defs, "properties": {"prompt": {"$ref": f"#/$defs/d{levels}"}}}


def test_an_anyof_bomb_is_refused_at_load(tmp_path: Path) -> None:
    path = write_schema(tmp_path, anyof_bomb(40))
    proc = subprocess.run([sys.executable, "-m", "dataprep", "validate", str(FIXTURES / "data" / "canonical.jsonl"),
                           "--schema", str(path)], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (f"Error: {path}: /$defs/d15: checking one value can take more than "
                           f"{schemas.MAX_EXPANSION:,} subschema evaluations (anyOf/oneOf/allOf nested through $ref); "
                           "simplify the schema\n")


def test_a_small_anyof_nest_is_fine(tmp_path: Path) -> None:
    path = write_schema(tmp_path, anyof_bomb(10))
    assert load_schema(path)["$defs"]["d10"]["anyOf"][0] == {"$ref": "#/$defs/d9"}


def test_shipped_schemas_pass_the_reference_check() -> None:
    for name in SCHEMA_NAMES:
        schemas.check_references(load_schema(name), name)

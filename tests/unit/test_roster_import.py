"""`roster import`: EHR CSV and vCard exports read into people and merged into clients.toml."""

from __future__ import annotations

import csv
import io
import stat
import tomllib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.practice import ClientSpec, Practice
from worker.cli import main
from worker.config import load_roster
from worker.onboarding.merge import merge
from worker.onboarding.people import read_csv, read_people

DATA = Path(__file__).resolve().parent.parent / "data"

ROSTER = """\
# my roster: comments stay where they are
[[clients]]
# Liz: consent signed 2026-01-12
id = "c007"
name = "Elizabeth Park"
alias = "E.P."
phone = "+1 555 0999"  # her work line
consent_to_call = true
voicemail_ok = true
emails = ["liz.park@example.org"]

[[clients]]
id = "c012"
name = "Kim Lee"
status = "active"
"""


def _clients(text: str) -> dict[str, dict[str, object]]:
    return {c["name"]: c for c in tomllib.loads(text)["clients"]}


def test_an_ehr_csv_with_bom_crlf_quoted_commas_and_a_nameless_row():
    """First/Last/Preferred columns, a BOM, CRLF ends and quoted commas read; the bad row is named by line."""
    reading = read_people(DATA / "clients_ehr.csv")
    names = [(p.line, p.name, p.preferred, p.status) for p in reading.people]
    assert names[:3] == [
        (2, "Elizabeth Park", "Liz", "active"),
        (3, "Omar Haddad", "", "active"),
        (4, "Grace O'Brien", "", "discharged"),
    ]
    assert reading.people[1].phone == "(555) 010-2020"
    assert reading.bad == [(6, "no name")]


def test_a_simplepractice_client_list():
    """ "Last, First" in the Client column, Couple rows split into their members, Archived is discharged."""
    people = read_people(DATA / "clients_simplepractice.csv").people
    assert [p.name for p in people] == [
        "Elizabeth Park",
        "Avery Quinn",
        "Sam & Kim Lee",
        "Sam Lee",
        "Kim Lee",
        "Ana Vega",
    ]
    assert people[2].members == ("Sam Lee", "Kim Lee")
    assert people[5].status == "discharged" and people[1].status == "active"


def test_a_vcard_contacts_export():
    """vCard 3.0 and 4.0, folded lines, tel: URIs (mobile first); personal contacts are left out."""
    reading = read_people(DATA / "contacts.vcf")
    people = {p.name: p for p in reversed(reading.people)}  # the first card of a name
    assert people["Omar Haddad"].phone == "+1-555-010-2021"
    assert people["Elizabeth Park"].preferred == "Liz"
    assert people["Sam & Kim Lee"].members == ("Sam Lee", "Kim Lee")
    assert people["Grace O'Brien"].status == "discharged"
    assert "Mum" not in people and reading.skipped == 1
    assert reading.bad == [(45, "no FN or N")]


def test_merge_keeps_ids_comments_and_her_values():
    """Her ids, comments, phone and consent stay; a new email is added; the changed phone is shown."""
    merged = merge(ROSTER, read_people(DATA / "contacts.vcf"))
    assert merged.text.startswith("# my roster: comments stay where they are\n[[clients]]\n# Liz: consent")
    assert 'phone = "+1 555 0999"  # her work line' in merged.text
    liz = _clients(merged.text)["Elizabeth Park"]
    assert liz["id"] == "c007" and liz["consent_to_call"] is True
    assert liz["emails"] == ["liz.park@example.org", "lizzie@example.org"]
    assert any(line.startswith("~ c007 (E.P.): 1 new email(s); phone differs") for line in merged.lines)


def test_merge_adds_new_people_without_consent_and_a_couple_with_its_members():
    """New people get the next ids and no consent; the couple card names its members by id."""
    merged = merge(ROSTER, read_people(DATA / "contacts.vcf"))
    clients = _clients(merged.text)
    assert clients["Omar Haddad"]["id"] == "c013"
    assert (
        clients["Omar Haddad"]["consent_to_call"] is False and clients["Omar Haddad"]["voicemail_ok"] is False
    )
    sam = clients["Sam Lee"]["id"]
    assert clients["Sam & Kim Lee"]["members"] == [sam, "c012"]
    assert clients["Grace O'Brien"]["status"] == "discharged"
    assert "line 34: the same person as line 1 (merged)" in " ".join(merged.lines)


def test_merged_roster_loads(tmp_path):
    """The merged text is a valid roster (ids unique, members known)."""
    path = tmp_path / "clients.toml"
    text = ROSTER
    for name in ("clients_ehr.csv", "clients_simplepractice.csv", "contacts.vcf"):
        text = merge(text, read_people(DATA / name)).text
    path.write_text(text, encoding="utf-8")
    clients = {c.id: c for c in load_roster(path)}
    assert len(clients) == len(set(clients))
    assert any(c.members for c in clients.values())


def test_an_inactive_export_discharges_an_active_client():
    """Kim is Discharged in the EHR list: the roster's active entry becomes discharged, and says so."""
    merged = merge(ROSTER, read_people(DATA / "clients_ehr.csv"))
    assert _clients(merged.text)["Kim Lee"]["status"] == "discharged"
    assert (
        "~ c012 (K.L.): 1 new email(s); phone added; now discharged (inactive in the export)" in merged.lines
    )


def test_importing_the_real_files_twice_changes_nothing():
    """Each export merged a second time leaves the text exactly as the first merge left it."""
    for name in ("clients_ehr.csv", "clients_simplepractice.csv", "contacts.vcf"):
        once = merge(ROSTER, read_people(DATA / name))
        twice = merge(once.text, read_people(DATA / name))
        assert twice.text == once.text and twice.added == twice.updated == 0, name


_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéÅ'-", min_size=1, max_size=8).map(str.capitalize)
_ROW = st.tuples(
    _NAME,
    _NAME,
    st.sampled_from(["", "x@example.org", "y@example.org", "Z@Example.org"]),
    st.sampled_from(["", "+1 555 0100", "(555) 010-2020"]),
    st.sampled_from(["Active", "Inactive", "", "Discharged"]),
)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(_ROW, max_size=8), start=st.sampled_from(["", ROSTER]))
def test_import_is_idempotent(rows, start):
    """Importing the same CSV twice: the second import changes nothing."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["First Name", "Last Name", "Email", "Phone", "Status"])
    writer.writerows(rows)
    reading = read_csv(buffer.getvalue())
    once = merge(start, reading)
    twice = merge(once.text, reading)
    assert twice.text == once.text
    assert twice.added == 0 and twice.updated == 0


def test_the_command_shows_aliases_only_and_writes_0600_on_request(tmp_path, capsys):
    """Default is a dry run; --write replaces the roster (0600); no name, email or phone is printed or logged."""
    practice = Practice(tmp_path / "p", clients=(ClientSpec("c012", "Kim Lee"),))
    roster = practice.root / "clients.toml"
    before = roster.read_text(encoding="utf-8")
    assert main(["--config", str(practice.config), "roster", "import", str(DATA / "clients_ehr.csv")]) == 0
    dry = capsys.readouterr()
    assert roster.read_text(encoding="utf-8") == before
    assert "Nothing was written" in dry.out
    assert (
        main(["--config", str(practice.config), "roster", "import", "--write", str(DATA / "clients_ehr.csv")])
        == 0
    )
    done = capsys.readouterr()
    assert stat.S_IMODE(roster.stat().st_mode) == 0o600
    assert "Elizabeth Park" in roster.read_text(encoding="utf-8")
    for text in (dry.out, dry.err, done.out, done.err):
        for private in ("Elizabeth", "Park", "Omar", "example.org", "555 0101", "010-2020", "moved away"):
            assert private not in text
    assert "+ c013 (E.P.): new, no consent on file yet" in dry.out
    assert "line 6: no name (skipped)" in dry.out


def test_a_file_without_a_name_column_is_a_clear_error(tmp_path, capsys):
    """A CSV with no name column exits 2 with the file named and no traceback."""
    practice = Practice(tmp_path / "p")
    bad = tmp_path / "list.csv"
    bad.write_text("Email,Phone\nx@example.org,555\n", encoding="utf-8")
    assert main(["--config", str(practice.config), "roster", "import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "no name column" in err and "x@example.org" not in err


def test_a_broken_roster_or_csv_is_reported_by_line_without_its_text(tmp_path, capsys):
    """A roster that is not TOML and a CSV with a NUL byte: exit 2, file:line, no contents echoed."""
    practice = Practice(tmp_path / "p")
    roster = practice.root / "clients.toml"
    roster.write_text('[[clients]]\nid = "c1"\nname = "Secret Person\n', encoding="utf-8")
    assert main(["--config", str(practice.config), "roster", "import", str(DATA / "clients_ehr.csv")]) == 2
    err = capsys.readouterr().err
    assert "clients.toml:3" in err and "Secret" not in err
    bad = tmp_path / "nul.csv"
    bad.write_bytes(b"Name,Email\nHidden Name\x00,x@example.org\n")
    practice.write_config()
    assert main(["--config", str(practice.config), "roster", "import", str(bad)]) in (0, 2)
    out = capsys.readouterr()
    assert "Hidden" not in out.err and "x@example.org" not in out.out + out.err

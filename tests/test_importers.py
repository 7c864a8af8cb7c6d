"""`waveui import`: CCPM epics, Taskmaster tasks and Claudio plans made into waveui epics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from waveui import agents, importers
from waveui.core import spec
from waveui.importers import ccpm
from waveui.importers.common import SourceError
from waveui.plan import make_plan

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "import"
CCPM_EPIC = FIXTURES / "ccpm" / ".claude" / "epics" / "user-auth"
TASKMASTER = FIXTURES / "taskmaster"
TASKMASTER_FILE = TASKMASTER / ".taskmaster" / "tasks" / "tasks.json"
LEGACY = FIXTURES / "taskmaster-legacy" / "tasks" / "tasks.json"
CLAUDIO = FIXTURES / "claudio-plan.json"
# Shapes of real files; what each reproduces, and from where, is in fixtures/import/README.md.
CLAUDIO_PLAN = FIXTURES / "claudio" / ".claudio-plan.json"
CLAUDIO_WRAPPED = FIXTURES / "claudio" / "wrapped-plan.json"
TASKMASTER_TAGGED = FIXTURES / "taskmaster-tagged"
CCPM_ARCHIVED = FIXTURES / "ccpm-archived" / ".claude" / "epics" / ".archived" / "search"
SOURCES = [FIXTURES / "ccpm", CCPM_EPIC, TASKMASTER, TASKMASTER_FILE, LEGACY, CLAUDIO, CLAUDIO_PLAN, CLAUDIO_WRAPPED,
           TASKMASTER_TAGGED, CCPM_ARCHIVED]


def imported(source) -> tuple[spec.Epic, str]:
    """The epic as it loads back from the written text, and the text."""
    text, _ = importers.convert(source, agents.epic_command_lines(None))
    return spec.loads(text), text


def header(text: str) -> list[str]:
    return [line for line in text.split("\n[epic]")[0].splitlines() if line.startswith("#")]


# ------------------------------------------------------------------- CCPM


def test_ccpm_maps_names_sizes_dependencies_and_analysis_files():
    epic, text = imported(CCPM_EPIC)
    assert epic.name == "user-auth"
    assert [t.id for t in epic.tasks] == ["002", "003", "004", "005"]  # 001 is completed
    tokens, login, reset, docs = epic.tasks
    assert tokens.title == "JWT token service"
    assert tokens.prompt.startswith("# Task: JWT token service") and "- [ ] unit tests cover rotation" in tokens.prompt
    assert [t.story_points for t in epic.tasks] == [3, 5, 5, 1]  # M, Hours: 5, L, XS
    assert tokens.requires == [] and login.requires == []  # their one dependency, 001, is done
    assert reset.requires == ["002", "003"]  # written "002, 003"
    assert docs.requires == ["004"]  # written as a block list
    # bullet lists with backticks and descriptions, and a comma-separated Files: line
    assert tokens.affected_files[:3] == ["src/auth/tokens.ts", "src/auth/keys.ts", "tests/auth/tokens.test.ts"]
    assert login.affected_files[:3] == ["src/api/auth.ts", "src/api/routes.ts", "src/auth/tokens.ts"]
    assert reset.affected_files == [] and docs.affected_files == []


def test_ccpm_conflicts_with_becomes_a_shared_lock_file():
    epic, text = imported(CCPM_EPIC)
    assert epic.conflicts == "lock"
    tokens, login = epic.task("002"), epic.task("003")
    assert ".waveui-locks/002-003" in tokens.affected_files
    assert ".waveui-locks/002-003" in login.affected_files
    assert sum(".waveui-locks/" in f for t in epic.tasks for f in t.affected_files) == 2  # one pair, listed once
    explained = " ".join(line.lstrip("# ") for line in header(text))
    assert "conflicts_with: 002 and 003 must not run at once" in explained
    assert 'sets conflicts = "lock" and gives each pair a shared pseudo-file .waveui-locks/<a>-<b>' in explained
    plan = make_plan(epic, 2)
    ids = [t.id for t in epic.tasks]
    assert [(ids[c.a], ids[c.b]) for c in plan.conflicts] == [("002", "003")]
    assert ".waveui-locks/002-003" in plan.conflicts[0].files


def test_ccpm_reports_unmapped_fields_of_tasks_it_imports():
    _, text = imported(CCPM_EPIC)
    lines = header(text)
    assert '# not mapped: task 004: fields "parallel", "created", "updated", "github"' in lines  # parallel: false
    assert '# not mapped: task 002: fields "created", "updated", "github"' in lines  # parallel: true is waveui's way
    assert '# not mapped: task 005: field "created"' in lines
    assert not any("task 001" in line for line in lines if "not mapped" in line)  # skipped: nothing of it is used
    assert "# skipped, done already: 001" in lines


def test_ccpm_epic_found_from_the_project_folder_and_from_epic_md():
    assert imported(FIXTURES / "ccpm")[0] == imported(CCPM_EPIC)[0]
    assert imported(CCPM_EPIC / "epic.md")[0] == imported(CCPM_EPIC)[0]


def test_ccpm_front_matter_keeps_ids_as_written():
    fields, body = ccpm.front_matter("---\nname: A: b\ndepends_on: [001, 002]\nconflicts_with: \"007, 9\"\n"
                                     "parallel: false  # a comment\n---\nbody\n", Path("001.md"))
    assert fields == {"name": "A: b", "depends_on": ["001", "002"], "conflicts_with": "007, 9", "parallel": False}
    assert body.strip() == "body"


def test_ccpm_hours_range_and_no_estimate():
    assert ccpm.story_points("## Effort Estimate\n- Estimated hours: 4-6\n") == 5
    assert ccpm.story_points("## Effort Estimate\n**Size**: xl\n") == 8
    assert ccpm.story_points("## Description\nSize: L\n") is None  # only the Effort Estimate section counts


def test_ccpm_references_by_number_issue_numbers_and_unknown_ones(tmp_path):
    epic_dir = tmp_path / "epics" / "billing"
    epic_dir.mkdir(parents=True)
    (epic_dir / "001.md").write_text("---\nname: One\nstatus: open\n---\nDo one.\n")
    (epic_dir / "002.md").write_text("---\nname: Two\nstatus: open\ndepends_on: [1, '#9']\n"
                                     "conflicts_with: [42]\n---\nDo two.\n")
    (epic_dir / "003-analysis.md").write_text("### Stream A\nFiles: src/x.py, /etc/passwd, all the tests\n")
    epic, text = imported(epic_dir)
    assert epic.task("002").requires == ["001"]
    assert epic.conflicts == "serialise"  # the only conflict names no task: no lock
    notes = header(text)
    assert "# not mapped: task 002: dependency '9' (no such task)" in notes
    assert "# not mapped: task 002: conflicts_with '42' (no such task)" in notes
    assert "# not mapped: 003-analysis.md: no task 003 to give its files to" in notes


def test_ccpm_metadata_blocks_effort_lines_and_an_unreadable_file():
    """Fields in a fenced ``## Metadata`` block, effort as ``effort: M (8-12 hours)`` and ``**Effort:** M (6-10
    hours)``; 004.md never closes its front matter and is left out, not the epic."""
    epic, text = imported(CCPM_ARCHIVED)
    assert epic.name == "search"
    assert [t.id for t in epic.tasks] == ["002", "003"]  # 001 closed; 004 unreadable
    endpoint, box = epic.tasks
    assert endpoint.title == "Search API endpoint" and box.title == "Search box in the header"
    assert [t.story_points for t in epic.tasks] == [3, 3]  # M and M
    assert endpoint.requires == [] and box.requires == []  # on 001, closed
    assert "GET /api/search?q= returns" in endpoint.prompt and "```yaml" not in endpoint.prompt
    assert endpoint.prompt.startswith("# Task 002: Search API endpoint")
    assert endpoint.affected_files[:2] == ["src/api/search.ts", "src/api/routes.ts"]
    assert ".waveui-locks/002-003" in box.affected_files  # conflicts_with read from the block
    lines = header(text)
    assert "# not mapped: left out, cannot be read: 004.md:1: the front matter has no closing --- line" in lines
    assert '# not mapped: task 002: field "created"' in lines  # effort is mapped now
    explained = " ".join(line.lstrip("# ") for line in header(text))
    assert "This epic is archived (it is in .archived/): its tasks still open are imported." in explained


def test_ccpm_epic_marked_completed_says_so(tmp_path):
    epic_dir = tmp_path / ".claude" / "epics" / "billing"
    shutil.copytree(CCPM_EPIC, epic_dir)
    epic_md = epic_dir / "epic.md"
    epic_md.write_text(epic_md.read_text().replace("status: in-progress", "status: completed"))
    _, text = imported(epic_dir)
    assert "This epic is marked completed in epic.md" in " ".join(line.lstrip("# ") for line in header(text))
    _, text = imported(CCPM_EPIC)
    assert "This epic is" not in text


def test_ccpm_file_that_is_not_text_is_left_out(tmp_path):
    epic_dir = tmp_path / "epics" / "x"
    epic_dir.mkdir(parents=True)
    (epic_dir / "001.md").write_text("---\nname: One\nstatus: open\n---\nDo one.\n")
    (epic_dir / "002.md").write_bytes(b"---\nname: \xff\xfe broken\n---\n")
    epic, text = imported(epic_dir)
    assert [t.id for t in epic.tasks] == ["001"]
    assert any(line.startswith("# not mapped: left out, cannot be read: 002.md: cannot read:") for line in header(text))


def test_ccpm_effort_forms():
    assert ccpm.story_points("Intro\n**Effort:** M (6-10 hours)\n") == 3
    assert ccpm.story_points("x", {"effort": "M (8-12 hours)"}) == 3
    assert ccpm.story_points("x", {"effort": "XL"}) == 8
    assert ccpm.story_points("x", {"effort": "6-10 hours"}) == 8
    assert ccpm.story_points("## Effort Estimate\nSize: L\n", {"effort": "XS"}) == 5  # the section first
    assert ccpm.story_points("no estimate at all") is None


# ------------------------------------------------------------- Taskmaster


def test_taskmaster_maps_tasks_subtasks_priorities_and_files():
    epic, text = imported(TASKMASTER)
    assert epic.name == "taskmaster"
    assert [t.id for t in epic.tasks] == ["2", "3", "3.2", "3.3", "4"]  # 1 and 3.1 are done, 5 deferred
    api, store, repo, seed, auth = epic.tasks
    assert api.title == "Design the REST API"
    assert api.prompt == ("Write the OpenAPI description of the task endpoints.\n\n"
                          "CRUD on /tasks, filtering by status, pagination with cursors.")
    assert api.affected_files == ["docs/openapi.yaml"] and auth.affected_files == ["src/middleware/auth.ts"]
    assert [t.priority for t in (api, store, auth)] == [1, 0, 2]  # high, medium, critical
    assert repo.priority == seed.priority == 0  # no priority of their own: their parent's
    assert api.requires == [] and auth.requires == []  # on task 1, done ("1" written as a string for auth)
    assert repo.requires == ["2"]  # its parent's dependency; its sibling 1 (3.1) is done
    assert seed.requires == ["2", "3.2", "4"]  # sibling by bare number, another task by string
    # the parent runs after its subtasks, to finish up: changing nothing is no failure there
    assert store.requires == ["2", "3.2", "3.3"] and store.expect_changes is False
    assert "subtasks (3.1, 3.2, 3.3) are done already" in store.prompt
    lines = header(text)
    assert "# skipped, done already: 1, 3.1" in lines
    assert "# skipped, deferred: 5" in lines
    assert '# not mapped: task 2: field "testStrategy"' in lines
    assert not any("task 1:" in line or "task 5:" in line for line in lines)  # nothing of them is imported


def test_taskmaster_tag_from_state_json(tmp_path):
    project = tmp_path / "tracker"
    shutil.copytree(TASKMASTER, project)
    state = project / ".taskmaster" / "state.json"
    state.write_text(json.dumps({"currentTag": "feature-webhooks"}))
    epic, text = imported(project)
    assert epic.name == "tracker-feature-webhooks"
    assert [(t.id, t.requires, t.priority) for t in epic.tasks] == [("1", [], 0), ("2", ["1"], 1)]
    state.write_text(json.dumps({"currentTag": "gone"}))
    with pytest.raises(SourceError, match="no tag 'gone'.*master, feature-webhooks"):
        importers.read_source(project)
    state.unlink()  # no state: Taskmaster's default tag
    assert [t.id for t in imported(project)[0].tasks][0] == "2"


def test_taskmaster_bare_legacy_file():
    epic, text = imported(LEGACY)
    assert epic.name == "notes-cli"  # meta.projectName
    assert [(t.id, t.requires, t.priority) for t in epic.tasks] == [("1", [], 0), ("2", ["1"], 1)]
    assert '# not mapped: task 1: field "testStrategy"' in header(text)


def test_taskmaster_real_statuses_files_and_subtasks():
    """Statuses and relevantFiles as Taskmaster's own types define them (eyaltoledano/claude-task-master,
    packages/tm-core/src/common/types/index.ts); subtask priority and dependencies as its next-task choice
    resolves them (scripts/modules/task-manager/find-next-task.js: ``st.priority || parent.priority``,
    ``toFullSubId``)."""
    epic, text = imported(TASKMASTER_TAGGED)
    # 1 completed (as done), 2 in review, 3.1 done, 5 deferred; 4 blocked still runs when 2 and 3 are merged
    assert [t.id for t in epic.tasks] == ["3", "3.2", "3.3", "4", "6"]
    editor, validation, photo, shopping, prints = epic.tasks
    assert editor.affected_files == ["src/editor/RecipeForm.tsx"]  # recipe.ts is only a reference
    assert shopping.affected_files == ["src/shopping/merge.ts", "src/model/units.ts"]  # create and modify
    assert validation.priority == 1 and photo.priority == -1  # the parent's high; its own low
    assert validation.requires == [] and editor.requires == ["3.2", "3.3"]  # "1" is sibling 3.1, done; 2 in review
    assert shopping.requires == ["3"]
    assert prints.requires == []
    lines = header(text)
    assert "# skipped, done already: 1, 3.1" in lines
    assert "# skipped, awaiting review: 2" in lines
    assert "# skipped, deferred: 5" in lines
    assert any("task 6: dependency '5' (deferred, so not imported" in line for line in lines)
    assert not any("dependency '2'" in line for line in lines)  # in review: its work is written, as if done
    assert any("task 3: a second subtask 3.2 ('Keyboard shortcuts')" in line for line in lines)
    explained = " ".join(line.lstrip("# ") for line in lines)
    assert "Taskmaster tag: master (the current one); the file also has sharing: import one with --tag NAME" \
        in explained
    assert "cannot see which tasks would conflict" not in explained


def test_taskmaster_tag_chosen_and_no_files_named(tmp_path):
    text, result = importers.convert(TASKMASTER_TAGGED, agents.epic_command_lines(None), tag="sharing")
    epic = spec.loads(text)
    assert epic.name == "taskmaster-tagged-sharing"
    assert [(t.id, t.requires) for t in epic.tasks] == [("1", []), ("2", ["1"])]
    explained = " ".join(line.lstrip("# ") for line in header(text))
    assert "Taskmaster tag: sharing (asked for with --tag); the file also has master" in explained
    assert ("No task names the files it changes, so waveui cannot see which tasks would conflict and may run them "
            'at once. Add affected_files = [...] to the tasks below (globs allowed), or relevantFiles entries '
            'with action "create" or "modify" in the source, and import again.') in explained
    with pytest.raises(SourceError, match=r"no tag 'nope' \(asked for with --tag\); it has master, sharing"):
        importers.read_source(TASKMASTER_TAGGED, tag="nope")
    with pytest.raises(SourceError, match="this tasks file has no tags"):
        importers.read_source(LEGACY, tag="master")
    with pytest.raises(SourceError, match="--tag chooses a Taskmaster tag, and this is a Claudio source"):
        importers.read_source(CLAUDIO_PLAN, tag="master")


# ---------------------------------------------------------------- Claudio


def test_claudio_maps_files_dependencies_priority_and_complexity():
    epic, text = imported(CLAUDIO)
    assert epic.name == "rate-limit-the-public-api-per-client"  # the objective's first words
    assert [t.id for t in epic.tasks] == ["task-1-config", "task-2-bucket", "task-3-middleware", "task-4-docs"]
    config, bucket, middleware, docs = epic.tasks
    assert [t.story_points for t in epic.tasks] == [2, 5, 3, 1]  # low, high, medium, 1
    assert [t.priority for t in epic.tasks] == [-1, 1, 0, -1]  # 1 (lower runs earlier: negated), high, medium, low
    assert bucket.requires == ["task-1-config"] and middleware.requires == ["task-2-bucket"]
    assert config.affected_files == ["internal/config/ratelimit.go", "internal/config/ratelimit_test.go"]
    assert config.prompt.startswith("Add requests-per-minute") and config.title == "Rate limit settings"
    lines = header(text)
    assert '# not mapped: plan: fields "summary", "insights", "constraints"' in lines  # execution_order is derived
    assert '# not mapped: task task-4-docs: field "assigned_instance"' in lines


def test_claudio_plan_as_claudio_writes_it():
    """A PlanSpec of PlannedTasks (Iron-Ham/claudio internal/ultraplan/types.go, internal/orchestrator/ultraplan.go):
    priority lower-runs-earlier, no_code, the plan's id as name; found in a folder by its default file name."""
    epic, text = imported(CLAUDIO_PLAN.parent)
    assert epic.name == "plan-search-index"
    schema, endpoint, reindex, verify = epic.tasks
    assert [t.priority for t in epic.tasks] == [0, -1, 1, -2]  # 0, 1, -1, 2: reindex runs before endpoint
    assert [t.story_points for t in epic.tasks] == [3, 5, 2, 2]
    assert verify.requires == ["task-2-search-endpoint", "task-3-reindex-command"]
    assert verify.expect_changes is False and endpoint.expect_changes is True
    lines = header(text)
    # dependency_graph and execution_order say again what depends_on says
    assert '# not mapped: plan: fields "objective", "summary", "insights", "constraints", "created_at"' in lines
    assert '# not mapped: task task-2-search-endpoint: field "issue_url"' in lines
    plan = make_plan(epic, 2)
    ids = [t.id for t in epic.tasks]
    assert [[ids[i] for i in wave] for wave in plan.waves][0] == ["task-1-fts-schema"]


def test_claudio_wrapped_plan_with_aliases():
    """``{"plan": {...}}`` with ``depends`` and ``complexity``, as ParsePlanFromFile accepts them
    (Iron-Ham/claudio internal/orchestrator/ultraplan/): not taken for a Taskmaster tag named "plan"."""
    text, result = importers.convert(CLAUDIO_WRAPPED, agents.epic_command_lines(None))
    assert result.kind == "Claudio"
    epic = spec.loads(text)
    assert epic.name == "split-the-settings-page-into-tabs"  # the summary's first words
    assert epic.task("task-2-settings").requires == ["task-1-tabs"]
    assert [t.story_points for t in epic.tasks] == [2, 3]  # low, medium
    assert [t.priority for t in epic.tasks] == [0, -1]


def test_claudio_ids_made_valid_and_done_tasks_skipped(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"tasks": [
        {"id": "set up", "title": "Setup", "files": [], "depends_on": []},
        {"id": 7, "title": "Old", "status": "done", "depends_on": []},
        {"id": "next", "title": "Next", "depends_on": ["set up", 7, "ghost"], "priority": "someday",
         "est_complexity": "huge", "files": ["../outside.py", "ok.py"]},
    ]}))
    epic, text = imported(plan)
    assert [t.id for t in epic.tasks] == ["set-up", "next"]
    assert epic.task("next").requires == ["set-up"]
    assert epic.task("next").affected_files == ["ok.py"]
    lines = header(text)
    assert "# renamed: task 'set up' is 'set-up'" in lines
    assert "# skipped, done already: 7" in lines
    for note in ("dependency 'ghost' (no such task)", "priority 'someday'", "est_complexity 'huge'",
                 "file '../outside.py' (outside the repository)"):
        assert any(note in line for line in lines), note


# ------------------------------------------------------- every source


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_output_loads_back_and_plans(source, tmp_path):
    text, result = importers.convert(source, agents.epic_command_lines("claude"))
    path = tmp_path / "waveui.toml"
    path.write_text(text)
    epic = spec.load(path)
    assert epic.tasks == result.epic.tasks
    assert epic.command.startswith('claude -p "$WAVEUI_PROMPT"')
    plan = make_plan(epic, 3)
    assert sorted(i for wave in plan.waves for i in wave) == list(range(len(epic.tasks)))
    assert text.startswith("# waveui epic made by `waveui import`")


def test_without_an_agent_the_command_is_suggested_not_set():
    text, _ = importers.convert(CLAUDIO, agents.epic_command_lines(None))
    epic = spec.loads(text)
    assert epic.command is None
    assert "# command = 'claude -p \"$WAVEUI_PROMPT\"" in text


def test_header_comments_stay_one_line_each(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"tasks": [{"id": "a", "depends_on": [], "files": [], "odd\nkey": 1}]}))
    text, _ = importers.convert(plan, agents.epic_command_lines(None))
    assert all(line.startswith("#") for line in text.split("\n[epic]")[0].strip().splitlines())
    spec.loads(text)


# --------------------------------------------------------------- the CLI


def test_cli_writes_the_epic_and_refuses_to_overwrite(cli, tmp_path):
    result = cli("import", str(CLAUDIO), "--agent", "codex")
    assert result.returncode == 0, result.stderr
    assert "wrote waveui.toml: 4 tasks" in result.stdout
    written = (tmp_path / "waveui.toml").read_text()
    assert spec.loads(written).command == agents.RECIPES["codex"].command

    result = cli("import", str(TASKMASTER))
    assert result.returncode == 2
    assert result.error_lines == ["waveui: error: waveui.toml already exists (use --force to overwrite it)"]
    assert (tmp_path / "waveui.toml").read_text() == written

    result = cli("import", str(TASKMASTER), "--force")
    assert result.returncode == 0 and "(2 done already, skipped)" in result.stdout
    assert spec.load(tmp_path / "waveui.toml").name == "taskmaster"
    assert cli("plan").returncode == 0

    result = cli("import", str(CCPM_EPIC), "-o", "auth.toml")
    assert result.returncode == 0 and (tmp_path / "auth.toml").exists()


def test_cli_tag_chooses_the_taskmaster_tag(cli, tmp_path):
    result = cli("import", str(TASKMASTER_TAGGED), "--tag", "sharing")
    assert result.returncode == 0, result.stderr
    assert spec.load(tmp_path / "waveui.toml").name == "taskmaster-tagged-sharing"
    result = cli("import", str(TASKMASTER_TAGGED), "--tag", "gone", "-o", "other.toml")
    assert result.returncode == 2
    assert result.error_lines == [f"waveui: error: {TASKMASTER_TAGGED / '.taskmaster' / 'tasks' / 'tasks.json'}: "
                                  "no tag 'gone' (asked for with --tag); it has master, sharing"]
    assert not (tmp_path / "other.toml").exists()


MALFORMED = {
    "bad-json": ("plan.json", '{"tasks": [{"id": 1,}]}', "not valid JSON"),
    "no-tasks-list": ("plan.json", '{"steps": []}', 'no "tasks" list'),
    "task-not-object": ("plan.json", '{"tasks": ["write code"]}', "must be an object"),
    "task-without-id": ("plan.json", '{"tasks": [{"title": "x", "depends_on": []}]}', "has no id"),
    "title-not-text": ("plan.json", '{"tasks": [{"id": "a", "title": 3, "files": []}]}', "title must be a string"),
    "duplicate-ids": ("plan.json", '{"tasks": [{"id": "a", "files": []}, {"id": "a", "files": []}]}', "appears twice"),
    "cycle": ("plan.json", '{"tasks": [{"id": "a", "depends_on": ["b"]}, {"id": "b", "depends_on": ["a"]}]}',
              "dependency cycle"),
    "all-done": ("tasks.json", '{"tasks": [{"id": 1, "status": "done", "dependencies": []}]}', "every task is done"),
    "empty": ("tasks.json", '{"master": {"tasks": []}}', "no tasks found"),
    "tm-bad-dependencies": ("tasks.json", '{"tasks": [{"id": 1, "dependencies": 2, "details": ""}]}',
                            "dependencies must be a list"),
    "not-json-at-all": ("notes.txt", "just some notes\n", "not valid JSON"),
    "ccpm-unclosed": (".claude/epics/x/001.md", "---\nname: x\n\nbody\n", "no closing --- line"),
    "ccpm-no-front-matter": (".claude/epics/x/001.md", "# Just a heading\n", "no front matter"),
    "ccpm-bad-line": (".claude/epics/x/001.md", "---\nname x\n---\nbody\n", "expected key: value"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_source_is_one_error_line_and_writes_nothing(cli, tmp_path, case):
    name, content, fragment = MALFORMED[case]
    source = tmp_path / "src" / name
    source.parent.mkdir(parents=True)
    source.write_text(content)
    target = tmp_path / "src" if name.startswith(".claude") else source
    result = cli("import", str(target), "-o", "out.toml")
    assert result.returncode == 2, result.stdout
    [line] = result.error_lines
    assert line.startswith("waveui: error: ") and fragment in line, line
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "out.toml").exists()


@pytest.mark.parametrize("where", ["missing", "empty-folder", "two-epics", "both-kinds"])
def test_unusable_source_paths_are_one_error_line(cli, tmp_path, where):
    folder = tmp_path / "project"
    folder.mkdir()
    if where == "two-epics":
        for name in ("a", "b"):
            shutil.copytree(CCPM_EPIC, folder / ".claude" / "epics" / name)
    if where == "both-kinds":
        shutil.copytree(CCPM_EPIC, folder / ".claude" / "epics" / "a")
        shutil.copytree(TASKMASTER / ".taskmaster", folder / ".taskmaster")
    result = cli("import", str(folder / "nope") if where == "missing" else str(folder))
    assert result.returncode == 2
    [line] = result.error_lines
    assert line.startswith("waveui: error: ")
    assert not (tmp_path / "waveui.toml").exists()

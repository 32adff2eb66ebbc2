"""A home directory that looks like a workspace someone has used for months.

The agent's cost depends on what it has to read and merge: a long User settings.json full of
comments, an extensions folder with its manifest, and the Roo Code / OpenCode files an earlier
start (or the old startup script) left behind. Everything is generated, deterministic, and
written under the given directory only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

SETTINGS_LINES = 300
EXTENSION_COUNT = 40

# Publishers/names of common extensions (no AI assistants: those are the lockdown's business).
_EXTENSIONS = [
    ("ms-python", "python"), ("ms-python", "debugpy"), ("ms-python", "black-formatter"),
    ("charliermarsh", "ruff"), ("ms-toolsai", "jupyter"), ("ms-toolsai", "jupyter-renderers"),
    ("redhat", "vscode-yaml"), ("redhat", "java"), ("redhat", "vscode-xml"),
    ("golang", "go"), ("rust-lang", "rust-analyzer"), ("tamasfe", "even-better-toml"),
    ("esbenp", "prettier-vscode"), ("dbaeumer", "vscode-eslint"), ("eamodio", "gitlens"),
    ("mhutchie", "git-graph"), ("hashicorp", "terraform"), ("ms-azuretools", "vscode-docker"),
    ("ms-kubernetes-tools", "vscode-kubernetes-tools"), ("editorconfig", "editorconfig"),
    ("streetsidesoftware", "code-spell-checker"), ("yzhang", "markdown-all-in-one"),
    ("davidanson", "vscode-markdownlint"), ("bierner", "markdown-mermaid"),
    ("gruntfuggly", "todo-tree"), ("usernamehw", "errorlens"), ("christian-kohler", "path-intellisense"),
    ("pkief", "material-icon-theme"), ("zhuangtongfa", "material-theme"), ("dracula-theme", "theme-dracula"),
    ("ms-vscode", "makefile-tools"), ("ms-vscode", "cmake-tools"), ("twxs", "cmake"),
    ("mechatroner", "rainbow-csv"), ("humao", "rest-client"), ("mtxr", "sqltools"),
    ("cweijan", "vscode-database-client2"), ("graphql", "vscode-graphql"), ("bradlc", "vscode-tailwindcss"),
    ("rooveterinaryinc", "roo-cline"),
]


def settings_json(lines: int = SETTINGS_LINES) -> str:
    """A JSONC User settings file of exactly `lines` lines: comments, nested objects, arrays."""
    out = [
        "// Settings of a developer who has used this workspace for a while.",
        "// Comments, trailing commas and odd spacing are all allowed in VS Code's JSONC.",
        "{",
        '    "workbench.colorTheme": "Default Dark Modern",',
        '    "editor.fontSize": 14,',
        '    "editor.tabSize": 4,',
        '    "editor.rulers": [88, 100, 120],',
        "    // keep the minimap: big files",
        '    "editor.minimap.enabled": true,',
        '    "files.exclude": {',
        '        "**/__pycache__": true,',
        '        "**/.pytest_cache": true,',
        '        "**/node_modules": true',
        "    },",
        '    "[python]": {',
        '        "editor.defaultFormatter": "charliermarsh.ruff",',
        '        "editor.formatOnSave": true,',
        '        "editor.codeActionsOnSave": {"source.organizeImports": "explicit"}',
        "    },",
    ]
    i = 0
    while len(out) < lines - 2:
        kind = i % 6
        if kind == 0:
            out.append(f"    // section {i // 6}: settings tried while debugging ticket DEV-{1000 + i}")
        elif kind == 1:
            out.append(f'    "extension{i % 37}.option{i}": {str(i % 2 == 0).lower()},')
        elif kind == 2:
            out.append(f'    "editor.tokenColorCustomizations{i}": {{"comments": "#6A9955", "strings": "#CE9178"}},')
        elif kind == 3:
            out.append(f'    "terminal.integrated.env.linux{i}": {{"PATH_EXTRA": "/opt/tool{i}/bin"}},')
        elif kind == 4:
            out.append(f'    "search.exclude{i}": ["**/dist", "**/build", "**/*.min.js"],  /* old */')
        else:
            out.append(f'    "files.associations{i}": {{"*.tpl{i}": "html"}},')
        i += 1
    out.append('    "git.autofetch": true,  // trailing comma below is fine in JSONC')
    out.append("}")
    return "\n".join(out) + "\n"


def _extension_manifest(publisher: str, name: str, version: str) -> dict[str, object]:
    return {
        "name": name,
        "displayName": name.replace("-", " ").title(),
        "publisher": publisher,
        "version": version,
        "engines": {"vscode": "^1.80.0"},
        "main": "./out/extension.js",
        "activationEvents": ["onStartupFinished"],
        "contributes": {"commands": [{"command": f"{name}.run", "title": f"{name}: Run"}]},
    }


def write_extensions(extensions_dir: Path, count: int = EXTENSION_COUNT) -> list[str]:
    """`count` installed extensions: a folder each (package.json, a bundle) and extensions.json."""
    entries = []
    ids = []
    for index, (publisher, name) in enumerate(_EXTENSIONS[:count]):
        version = f"{1 + index % 4}.{index}.{index * 3 % 17}"
        folder = f"{publisher}.{name}-{version}"
        root = extensions_dir / folder
        (root / "out").mkdir(parents=True, exist_ok=True)
        (root / "package.json").write_text(json.dumps(_extension_manifest(publisher, name, version), indent=2))
        (root / "out" / "extension.js").write_text("// bundled extension code\n" + "void 0;\n" * 200)
        (root / "README.md").write_text(f"# {name}\n")
        ids.append(f"{publisher}.{name}")
        entries.append({
            "identifier": {"id": f"{publisher}.{name}", "uuid": f"00000000-0000-4000-8000-{index:012d}"},
            "version": version,
            "location": {"$mid": 1, "path": str(root), "scheme": "file"},
            "relativeLocation": folder,
            "metadata": {"installedTimestamp": 1_700_000_000_000 + index, "source": "gallery",
                         "targetPlatform": "undefined", "updated": False},
        })
    (extensions_dir / "extensions.json").write_text(json.dumps(entries))
    return ids


def _old_startup_files(home: Path) -> None:
    """What the platform's old startup script left: Roo/OpenCode files with a key inline, a .bashrc."""
    old_key = "sk-old-startup-script-key-0000"
    roo = home / ".config" / "roo-code" / "settings.json"
    roo.parent.mkdir(parents=True, exist_ok=True)
    roo.write_text(json.dumps({"providerProfiles": {"currentApiConfigName": "litellm", "apiConfigs": {
        "litellm": {"apiProvider": "openai", "openAiBaseUrl": "http://litellm:4000/v1",
                    "openAiApiKey": old_key, "openAiModelId": "claude-sonnet-4-5", "id": "litellm-default"}}}},
        indent=2))
    opencode = home / ".config" / "opencode"
    opencode.mkdir(parents=True, exist_ok=True)
    (opencode / "opencode.json").write_text(json.dumps({"$schema": "https://opencode.ai/config.json",
                                                         "model": "litellm/claude-sonnet-4-5"}, indent=2))
    (opencode / "enforcement.md").write_text("## Development Guidelines\n\nAn older copy of the prompt.\n")
    (home / ".roo" / "rules").mkdir(parents=True, exist_ok=True)
    (home / ".roo" / "rules" / "team-conventions.md").write_text("# Team conventions\n\nUse type hints.\n")
    bashrc = "\n".join(f"# line {n} of a typical .bashrc" for n in range(80))
    (home / ".bashrc").write_text(bashrc + "\nexport EDITOR=vim\nalias ll='ls -la'\n")
    # The bash baseline configures OpenCode only when its binary is installed (as in the image).
    binary = home / ".opencode" / "bin" / "opencode"
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text("#!/bin/sh\necho opencode stand-in\n")
    os.chmod(binary, 0o755)


def build_home(home: Path) -> dict[str, object]:
    """Fill `home` with a realistic workspace; returns what was made (for the results file)."""
    user = home / ".local" / "share" / "code-server" / "User"
    user.mkdir(parents=True, exist_ok=True)
    text = settings_json()
    (user / "settings.json").write_text(text)
    ids = write_extensions(home / ".local" / "share" / "code-server" / "extensions")
    _old_startup_files(home)
    return {"settings_json_lines": text.count("\n"), "extensions": len(ids)}

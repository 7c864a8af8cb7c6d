"""`waveui completion bash|zsh|fish`: a small static completion script made from the argument parser.

Made from the parser itself, so a new subcommand or option is completed
without anyone remembering to add it here. Values that are paths are left to
the shell's own file completion.
"""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "fish")


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _help(parser: argparse.ArgumentParser, name: str) -> str:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next((c.help or "" for c in action._choices_actions if c.dest == name), "")


def _options(sub: argparse.ArgumentParser) -> list[str]:
    return [s for a in sub._actions for s in a.option_strings]


def _positional_choices(sub: argparse.ArgumentParser) -> list[str]:
    return [str(c) for a in sub._actions if not a.option_strings and a.choices for c in a.choices]


def _value_choices(sub: argparse.ArgumentParser) -> dict[str, list[str]]:
    return {s: [str(c) for c in a.choices] for a in sub._actions if a.option_strings and a.choices
            for s in a.option_strings}


def bash(parser: argparse.ArgumentParser) -> str:
    commands = _commands(parser)
    top = " ".join([*commands, "--help", "--version"])
    option_cases, value_cases, positional_cases = [], [], []
    for name, sub in commands.items():
        option_cases.append(f"        {name}) words=\"{' '.join(_options(sub))}\" ;;")
        for option, choices in _value_choices(sub).items():
            value_cases.append(f"        \"{name} {option}\") words=\"{' '.join(choices)}\" ;;")
        if _positional_choices(sub):
            positional_cases.append(f"        {name}) words=\"{' '.join(_positional_choices(sub))}\" ;;")
    return "\n".join([
        "# waveui completion for bash: add `eval \"$(waveui completion bash)\"` to ~/.bashrc",
        "_waveui() {",
        "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} words=\"\"",
        "    COMPREPLY=()",
        "    if [ \"$COMP_CWORD\" -eq 1 ]; then",
        f"        words=\"{top}\"",
        "    else",
        "        case \"${COMP_WORDS[1]} $prev\" in",
        *value_cases,
        "        esac",
        "        if [ -z \"$words\" ] && [[ $cur == -* ]]; then",
        "            case \"${COMP_WORDS[1]}\" in",
        *["    " + line for line in option_cases],
        "            esac",
        "        elif [ -z \"$words\" ]; then",
        "            case \"${COMP_WORDS[1]}\" in",
        *["    " + line for line in positional_cases],
        "            esac",
        "        fi",
        "    fi",
        "    [ -n \"$words\" ] && COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))",
        "    return 0",
        "}",
        "complete -o default -F _waveui waveui",
        "",
    ])


def zsh(parser: argparse.ArgumentParser) -> str:
    # zsh runs bash completion functions through bashcompinit: one script to keep right, not two.
    script = bash(parser).replace("for bash: add `eval \"$(waveui completion bash)\"` to ~/.bashrc",
                                  "for zsh: add `eval \"$(waveui completion zsh)\"` to ~/.zshrc")
    return ("(( $+functions[compdef] )) || { autoload -U +X compinit && compinit; }\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + script)


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish(parser: argparse.ArgumentParser) -> str:
    commands = _commands(parser)
    lines = ["# waveui completion for fish: waveui completion fish > ~/.config/fish/completions/waveui.fish",
             "complete -c waveui -f -n __fish_use_subcommand -l help -d 'show help'",
             "complete -c waveui -f -n __fish_use_subcommand -l version -d 'show the version'"]
    for name, sub in commands.items():
        lines.append(f"complete -c waveui -f -n __fish_use_subcommand -a {name} -d {_fish_quote(_help(parser, name))}")
        seen = f"-n '__fish_seen_subcommand_from {name}'"
        if _positional_choices(sub):
            lines.append(f"complete -c waveui -f {seen} -a {_fish_quote(' '.join(_positional_choices(sub)))}")
        for action in sub._actions:
            if not action.option_strings:
                continue
            flags = " ".join(f"-l {s[2:]}" if s.startswith("--") else f"-s {s[1:]}" for s in action.option_strings)
            takes = action.nargs != 0
            value = f" -xa {_fish_quote(' '.join(map(str, action.choices)))}" if action.choices else (" -r" if takes else "")
            lines.append(f"complete -c waveui {seen} {flags}{value} -d {_fish_quote(action.help or '')}")
    return "\n".join(lines) + "\n"


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    return {"bash": bash, "zsh": zsh, "fish": fish}[shell](parser)

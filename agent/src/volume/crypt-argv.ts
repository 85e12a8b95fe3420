/**
 * Started as `cryptpilot-crypt` (a symlink to this binary), upstream's command line is mapped onto
 * `volume ...`: `open data0` -> `volume open data0`, `config check` -> `volume check`, and the
 * upstream unit's `boot-service --stage system-volumes-auto-open` -> `volume open --auto`.
 */
const GLOBALS_WITH_VALUE = new Set(["-c", "--config-dir"]);

export function cryptArgv(args: string[]): string[] {
  let i = 0;
  while (i < args.length && args[i]!.startsWith("-")) i += GLOBALS_WITH_VALUE.has(args[i]!) ? 2 : 1;
  if (i >= args.length) return args; // only options: --help, --version
  const before = args.slice(0, i);
  const [word, ...rest] = args.slice(i);
  if (word === "config" && rest[0] === "check") return [...before, "volume", "check", ...rest.slice(1)];
  if (word === "boot-service") {
    const stage = rest.findIndex((a) => a === "--stage" || a.startsWith("--stage="));
    const value = rest[stage]?.includes("=") ? rest[stage]!.split("=")[1] : rest[stage + 1];
    if (value === "system-volumes-auto-open") return [...before, "volume", "open", "--auto"];
  }
  return [...before, "volume", word!, ...rest];
}

/** The shape every CLI command file exports. Commands parse their own flags with node:util parseArgs. */
export interface GlobalOptions {
  /** Directory holding fde.toml, global.toml, metadata.toml (default /etc/cryptpilot). */
  configDir: string;
  verbose: boolean;
}

export interface Command {
  /** Words that select the command, e.g. ["config", "check"]. */
  name: string[];
  summary: string;
  /** Full usage text printed by `--help` for this command. */
  usage: string;
  /** Returns the process exit code. */
  run(args: string[], globals: GlobalOptions): Promise<number>;
}

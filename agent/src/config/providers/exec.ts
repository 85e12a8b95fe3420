/** exec: stdout of a command (no shell) is the key. Upstream: command, args. Ours adds timeout_secs. */
import * as v from "valibot";
import { Args, compact, NonEmpty, type ProviderTable, TimeoutSecs, timeoutSecsToToml } from "./common.ts";

export interface ExecConfig {
  type: "exec";
  command: string;
  args: string[];
  timeoutMs: number;
}

export const exec: ProviderTable<ExecConfig> = {
  type: "exec",
  schema: v.pipe(
    v.strictObject({ command: NonEmpty, args: Args, timeout_secs: TimeoutSecs }),
    v.transform(
      (t): ExecConfig => ({
        type: "exec",
        command: t.command,
        args: t.args,
        timeoutMs: Math.round(t.timeout_secs * 1000),
      }),
    ),
  ),
  toToml: (c) => compact({ command: c.command, args: c.args, timeout_secs: timeoutSecsToToml(c.timeoutMs) }),
};

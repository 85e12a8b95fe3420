import { FdeError } from "../errors.ts";
import type { Command } from "./command.ts";

/** A command that exists in the CLI but whose capability has not landed yet. */
export function notYetAvailable(name: string[], summary: string): Command {
  return {
    name,
    summary,
    usage: `cryptpilot-fde ${name.join(" ")}\n\n${summary}\n\nNot available in this build yet.`,
    async run() {
      throw new FdeError(`'${name.join(" ")}' is not available in this build of cryptpilot-fde yet.`, {
        exitCode: 3,
      });
    },
  };
}

/**
 * Logging to stderr (journal+console in the initrd). Never pass key material here: log lines are
 * what an operator pastes into a bug report.
 */
let verbose = false;

export function setVerbose(on: boolean): void {
  verbose = on;
}

export function isVerbose(): boolean {
  return verbose;
}

// console.* rather than process.stdout/stderr: the first touch of those streams costs ~20 ms of
// start-up in the compiled binary. "%s" keeps a "%" in the message from being interpreted.
function write(level: string, message: string): void {
  console.error("%s", `${level}${message}`);
}

/** A line of command output on stdout (results, not diagnostics). */
export function print(line: string): void {
  console.log("%s", line);
}

export const log = {
  debug(message: string): void {
    if (verbose) write("debug: ", message);
  },
  info(message: string): void {
    write("", message);
  },
  warn(message: string): void {
    write("warning: ", message);
  },
  error(message: string): void {
    write("error: ", message);
  },
};

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

function write(level: string, message: string): void {
  process.stderr.write(`${level}${message}\n`);
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

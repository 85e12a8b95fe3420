/** What a path is, for errors that refuse a FIFO, device or link where a regular file belongs. */
import { constants, type Stats } from "node:fs";

/**
 * open(2) flags for reading a file someone else named before checking what it is: O_NONBLOCK so
 * opening a FIFO does not wait for a writer before fstat can refuse it, O_NOCTTY so a terminal
 * never becomes ours.
 */
export const OPEN_TO_INSPECT = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

/** "a FIFO", "a directory", ... ; "a symbolic link" only for lstat results. */
export function describeFileType(st: Stats): string {
  if (st.isSymbolicLink()) return "a symbolic link";
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSocket()) return "a socket";
  return "not a regular file";
}

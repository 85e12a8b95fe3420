/**
 * Text taken from attacker-controlled bytes (partition names, file names, labels read out of a
 * disk image or initrd; a peer's error message or Location) is shown through this before it
 * reaches a terminal or a log, so an escape sequence in a GPT partition name cannot rewrite the
 * operator's screen and a peer cannot forge log lines.
 */

/**
 * Control characters (C0 with ESC, DEL, C1) and the line and bidi-override characters that can
 * disguise text on a terminal; shown as \xNN (\u{...} above 0xff).
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** `text` with every control or bidi-override character written as \xNN. */
export function escapeText(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
  });
}

/** A peer's text for one log line: escaped as escapeText does, at most `max` characters. */
export function printable(text: string, max = 200): string {
  const clean = escapeText(text);
  return clean.length > max ? `${clean.slice(0, max)}...` : clean;
}

/**
 * Host-wide locks between harness processes (several people and CI run vm-test on one 2-core
 * machine): one QEMU boot at a time, and one runner per scenario out dir. Held by a `flock`
 * child, so a crashed runner releases it.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";

export async function withLock<T>(path: string, onWait: () => void, fn: () => Promise<T>): Promise<T> {
  mkdirSync(dirname(path), { recursive: true });
  const holder = Bun.spawn(["flock", "-x", path, "-c", "echo locked; exec cat >/dev/null"], {
    stdin: "pipe",
    stdout: "pipe",
  });
  const reader = holder.stdout.getReader();
  const waitNote = setTimeout(onWait, 1000);
  const { value } = await reader.read();
  clearTimeout(waitNote);
  if (!value || !new TextDecoder().decode(value).includes("locked"))
    throw new Error(`could not lock ${path}`);
  try {
    return await fn();
  } finally {
    holder.stdin.end();
    await holder.exited;
  }
}

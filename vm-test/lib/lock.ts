/**
 * Host-wide locks between harness processes (several people and CI run vm-test on one machine):
 * a few QEMU boots at a time (slots), and one runner per scenario out dir. A slot is held by a
 * `flock` child, so a crashed runner releases it. Waiters take turns in arrival order (flock alone
 * lets a newcomer overtake, and a boot could wait behind many others).
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Subprocess } from "bun";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** This process's ticket in `<lock>.queue/`; `position()` counts the live tickets ahead of it. */
function enqueue(path: string): { position(): number; leave(): void } {
  const queue = `${path}.queue`;
  mkdirSync(queue, { recursive: true });
  const ticket = `${String(Date.now()).padStart(15, "0")}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  writeFileSync(join(queue, ticket), "");
  return {
    position() {
      const live = readdirSync(queue)
        .sort()
        .filter((t) => {
          const pid = Number(t.split("-")[1]);
          if (alive(pid)) return true;
          rmSync(join(queue, t), { force: true });
          return false;
        });
      const index = live.indexOf(ticket);
      return Math.max(index, 0);
    },
    leave: () => rmSync(join(queue, ticket), { force: true }),
  };
}

/** Takes the lock file if it is free; the returned child holds it until its stdin closes. */
async function tryHold(path: string): Promise<Subprocess<"pipe", "pipe", "inherit"> | undefined> {
  const holder = Bun.spawn(["flock", "-xn", path, "-c", "echo locked; exec cat >/dev/null"], {
    stdin: "pipe",
    stdout: "pipe",
  });
  const { value } = await holder.stdout.getReader().read();
  if (value && new TextDecoder().decode(value).includes("locked")) return holder;
  await holder.exited;
  return undefined;
}

/** Slot 0 is the lock file itself, so a one-slot lock is the plain exclusive lock. */
const slotPath = (path: string, slot: number) => (slot === 0 ? path : `${path}.${slot}`);

/** Runs `fn` while holding one of `slots` slots of the lock at `path` (default: an exclusive lock). */
export async function withLock<T>(
  path: string,
  onWait: () => void,
  fn: () => Promise<T>,
  slots = 1,
): Promise<T> {
  mkdirSync(dirname(path), { recursive: true });
  const waitNote = setTimeout(onWait, 3000);
  const ticket = enqueue(path);
  let holder: Subprocess<"pipe", "pipe", "inherit"> | undefined;
  try {
    for (;;) {
      if (ticket.position() < slots) {
        for (let slot = 0; slot < slots && !holder; slot++) holder = await tryHold(slotPath(path, slot));
        if (holder) break;
      }
      await Bun.sleep(1000);
    }
  } finally {
    clearTimeout(waitNote);
    ticket.leave();
  }
  try {
    return await fn();
  } finally {
    holder.stdin.end();
    await holder.exited;
  }
}

/**
 * Host-wide locks between harness processes (several people and CI run vm-test on one 2-core
 * machine): one QEMU boot at a time, and one runner per scenario out dir. Held by a `flock`
 * child, so a crashed runner releases it. Waiters take turns in arrival order (flock alone lets
 * a newcomer overtake, and a boot could wait behind many others).
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until this process's ticket is the oldest live one in `<lock>.queue/`. */
async function waitTurn(path: string): Promise<() => void> {
  const queue = `${path}.queue`;
  mkdirSync(queue, { recursive: true });
  const ticket = `${String(Date.now()).padStart(15, "0")}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  writeFileSync(join(queue, ticket), "");
  const leave = () => rmSync(join(queue, ticket), { force: true });
  for (;;) {
    const live = readdirSync(queue)
      .sort()
      .filter((t) => {
        const pid = Number(t.split("-")[1]);
        if (alive(pid)) return true;
        rmSync(join(queue, t), { force: true });
        return false;
      });
    if (live[0] === ticket || !existsSync(join(queue, ticket))) return leave;
    await Bun.sleep(1000);
  }
}

export async function withLock<T>(path: string, onWait: () => void, fn: () => Promise<T>): Promise<T> {
  mkdirSync(dirname(path), { recursive: true });
  const waitNote = setTimeout(onWait, 3000);
  const leave = await waitTurn(path);
  const holder = Bun.spawn(["flock", "-x", path, "-c", "echo locked; exec cat >/dev/null"], {
    stdin: "pipe",
    stdout: "pipe",
  });
  try {
    const { value } = await holder.stdout.getReader().read();
    if (!value || !new TextDecoder().decode(value).includes("locked"))
      throw new Error(`could not lock ${path}`);
  } finally {
    clearTimeout(waitNote);
    leave();
  }
  try {
    return await fn();
  } finally {
    holder.stdin.end();
    await holder.exited;
  }
}

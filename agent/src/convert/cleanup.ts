/** Undo actions (unmount, detach loop, delete temp files) run in reverse order, even after a failure. */
import { log } from "../log.ts";

export class Cleanup {
  private actions: { label: string; fn: () => Promise<unknown> }[] = [];

  push(label: string, fn: () => Promise<unknown>): void {
    this.actions.push({ label, fn });
  }

  /** Run and forget the newest action whose label matches (e.g. unmount before the next step). */
  async runOne(label: string): Promise<void> {
    const i = this.actions.findLastIndex((a) => a.label === label);
    if (i < 0) return;
    const [action] = this.actions.splice(i, 1);
    await action!.fn();
  }

  async runAll(): Promise<void> {
    while (this.actions.length > 0) {
      const action = this.actions.pop()!;
      try {
        await action.fn();
      } catch (err) {
        log.warn(`cleanup '${action.label}' failed: ${(err as Error).message}`);
      }
    }
  }
}

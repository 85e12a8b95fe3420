/**
 * boot/kernel-modules.ts: on a boot that attests, the TEE guest drivers and configfs are loaded in
 * the stage's one modprobe run, and configfs is mounted when its directory is there but nothing is
 * mounted on it; a boot that does not attest loads only the storage modules.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { attests } from "../../src/boot/before-sysroot.ts";
import { KERNEL_MODULES, loadModules, TEE_MODULES } from "../../src/boot/kernel-modules.ts";
import type { run } from "../../src/command.ts";
import type { FdeConfig } from "../../src/config/index.ts";
import { CommandError } from "../../src/errors.ts";

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A runner recording each call; `fail` names programs that fail as modprobe/mount would. */
function recorder(fail: string[] = []) {
  const calls: string[][] = [];
  const runner = (async (cmd: string, args: string[]) => {
    calls.push([cmd, ...args]);
    if (fail.includes(cmd)) throw new CommandError(cmd, 32, "failed");
    return { code: 0, stdout: new Uint8Array(), stderr: "" };
  }) as typeof run;
  return { calls, runner };
}

test("one modprobe run with the storage modules, configfs and both TEE guest drivers", async () => {
  const { calls, runner } = recorder();
  await loadModules({ tee: true, runner, configfsRoot: "/nonexistent/config" });
  expect(calls.length).toBe(1);
  expect(calls[0]!.slice(0, 2)).toEqual(["modprobe", "-a"]);
  for (const m of ["dm_crypt", "dm_verity", "configfs", "tdx_guest", "sev_guest"]) {
    expect(calls[0]).toContain(m);
  }
  expect(TEE_MODULES.indexOf("configfs")).toBeLessThan(TEE_MODULES.indexOf("tdx_guest"));
});

test("a boot that does not attest: the storage modules only, no configfs mount", async () => {
  const root = mkdtempSync(join(tmpdir(), "configfs-"));
  dirs.push(root);
  const { calls, runner } = recorder();
  await loadModules({ tee: false, runner, configfsRoot: root });
  expect(calls).toEqual([["modprobe", "-a", ...KERNEL_MODULES]]);
  const provider = (type: string) => ({ type }) as NonNullable<FdeConfig["rootfs"]["encrypt"]>;
  const fde = (rootfs: string | undefined, delta: string) =>
    ({
      rootfs: {
        deltaLocation: "disk",
        deltaBackend: "dm-snapshot",
        encrypt: rootfs ? provider(rootfs) : undefined,
      },
      delta: { integrity: false, encrypt: provider(delta) },
    }) as FdeConfig;
  expect(attests(fde(undefined, "exec"))).toBe(false);
  expect(attests(fde("tpm2", "exec"))).toBe(false);
  expect(attests(fde("kbs", "exec"))).toBe(true);
  expect(attests(fde(undefined, "kbs"))).toBe(true);
});

test("configfs's directory present but not mounted: mounted there; absent: no mount", async () => {
  const root = mkdtempSync(join(tmpdir(), "configfs-"));
  dirs.push(root);
  const { calls, runner } = recorder();
  await loadModules({ tee: true, runner, configfsRoot: root });
  expect(calls[1]).toEqual(["mount", "-t", "configfs", "configfs", root]);
  const absent = recorder();
  await loadModules({ tee: true, runner: absent.runner, configfsRoot: join(root, "missing") });
  expect(absent.calls.map((c) => c[0])).toEqual(["modprobe"]);
});

test("a failing modprobe or mount does not stop the stage (detection names what is missing)", async () => {
  const root = mkdtempSync(join(tmpdir(), "configfs-"));
  dirs.push(root);
  const { calls, runner } = recorder(["modprobe", "mount"]);
  await loadModules({ tee: true, runner, configfsRoot: root });
  expect(calls.map((c) => c[0])).toEqual(["modprobe", "mount"]);
});

/**
 * A failed boot stage fails closed (boot/failure.ts, boot/index.ts, the dracut module): it closes
 * what the stages opened in stack order, pauses, and stops the machine with the configured action;
 * nothing offers a shell unless global.toml opts in. The `verity-tamper`, `kbs-http`, `tpm2-delta`
 * and `aliyun` VM scenarios boot it for real (expectStopped checks the console).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import {
  type FailureDeps,
  failClosed,
  mountPoints,
  type Teardown,
  teardownPlan,
} from "../../src/boot/failure.ts";
import { runStage } from "../../src/boot/index.ts";
import { DEFAULT_GLOBAL, type GlobalConfig } from "../../src/config/fde.ts";
import { loadConfig } from "../../src/config/index.ts";

const ROOT = resolve(import.meta.dir, "../../..");
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
};

const DIRS = { sysroot: "/sysroot", runDir: "/run/cryptpilot" };

const MOUNTS = [
  "proc /proc proc rw 0 0",
  "/dev/mapper/rootfs /sysroot ext4 ro 0 0",
  "/dev/mapper/delta /run/cryptpilot/delta ext4 rw 0 0",
  "/sysroot /run/cryptpilot/lower ext4 ro 0 0",
  "/dev/mapper/rootfs /sysroot overlay rw 0 0",
  "/run/cryptpilot/delta/overlay/mount-binds/var/lib/docker /sysroot/var/lib/docker ext4 rw 0 0",
  "tmpfs /run/cryptpilot-other tmpfs rw 0 0",
  "tmpfs /run/with\\040space tmpfs rw 0 0",
].join("\n");

/** Records every call; `failing` names targets/commands whose close or exec rejects. */
function fakeDeps(opts: { mapped?: string[]; failing?: string[]; initrd?: boolean; mounts?: string } = {}) {
  const calls: string[] = [];
  const lines: string[] = [];
  const deps: FailureDeps = {
    async close(step: Teardown) {
      calls.push(`close ${step.kind} ${step.target}`);
      if (opts.failing?.includes(step.target)) throw new Error(`${step.target} is busy\nmore`);
    },
    async exec(cmd, args) {
      calls.push(`exec ${cmd} ${args.join(" ")}`.trim());
      if (opts.failing?.includes(cmd)) throw new Error(`${cmd} failed`);
    },
    inInitrd: () => opts.initrd ?? true,
    readMounts: async () => opts.mounts ?? MOUNTS,
    mapped: (name) => (opts.mapped ?? []).includes(name),
    async sleep(ms) {
      calls.push(`sleep ${ms}`);
    },
    write: (line) => lines.push(line),
  };
  return { deps, calls, lines };
}

const boot = (b: Partial<GlobalConfig["boot"]> = {}): GlobalConfig["boot"] => ({
  ...DEFAULT_GLOBAL.boot,
  ...b,
});

describe("teardown plan", () => {
  test("mount points decode the kernel's octal escapes", () => {
    expect(mountPoints(MOUNTS)).toContain("/run/with space");
  });

  test("our mounts newest first, then our mappings top of the stack first, then the VG", () => {
    const plan = teardownPlan(
      MOUNTS,
      (n) => ["rootfs", "rootfs_extended", "delta", "rootfs_verity"].includes(n),
      DIRS,
    );
    expect(plan.map((s) => `${s.kind} ${s.target}`)).toEqual([
      "umount /sysroot/var/lib/docker",
      "umount /sysroot",
      "umount /run/cryptpilot/lower",
      "umount /run/cryptpilot/delta",
      "umount /sysroot",
      "dm rootfs",
      "dm rootfs_extended",
      "luks delta",
      "dm rootfs_verity",
      "vg cryptpilot",
    ]);
  });

  test("an encrypted rootfs is closed through cryptsetup, last of the mappings", () => {
    const plan = teardownPlan("", (n) => n === "rootfs_decrypted" || n === "rootfs", DIRS);
    expect(plan).toEqual([
      { kind: "dm", target: "rootfs" },
      { kind: "luks", target: "rootfs_decrypted" },
      { kind: "vg", target: "cryptpilot" },
    ]);
  });
});

describe("failClosed", () => {
  test("default: closes everything, pauses 10 s, syncs, then powers off at once (no shell)", async () => {
    const { deps, calls, lines } = fakeDeps({ mapped: ["rootfs_verity", "delta"], mounts: "" });
    await failClosed(DEFAULT_GLOBAL.boot, DIRS, deps);
    expect(calls).toEqual([
      "close luks delta",
      "close dm rootfs_verity",
      "close vg cryptpilot",
      "sleep 10000",
      "exec sync",
      "exec systemctl --force --force poweroff",
    ]);
    expect(lines.join("\n")).toContain("closed delta, rootfs_verity, volume group cryptpilot");
  });

  test("one thing that stays open does not keep the rest open, and is named", async () => {
    const { deps, calls, lines } = fakeDeps({
      mapped: ["rootfs", "rootfs_verity"],
      failing: ["rootfs"],
      mounts: "",
    });
    await failClosed(boot({ onFailure: "reboot", failurePauseSecs: 0 }), DIRS, deps);
    expect(calls).toEqual([
      "close dm rootfs",
      "close dm rootfs_verity",
      "close vg cryptpilot",
      "exec sync",
      "exec systemctl --force --force reboot",
    ]);
    expect(lines).toContain("cryptpilot-fde: could not close rootfs: rootfs is busy");
  });

  test("halt and a machine that cannot be stopped: reported, returns (the unit's FailureAction= backs up)", async () => {
    const { deps, calls, lines } = fakeDeps({ failing: ["systemctl"], mounts: "" });
    await failClosed(boot({ onFailure: "halt", failurePauseSecs: 3 }), DIRS, deps);
    expect(calls.slice(-3)).toEqual(["sleep 3000", "exec sync", "exec systemctl --force --force halt"]);
    expect(lines.at(-1)).toBe("cryptpilot-fde: could not stop the machine: systemctl failed");
  });

  test("shell (debugging opt-in): closes, then returns without stopping the machine", async () => {
    const { deps, calls } = fakeDeps({ mapped: ["delta"], mounts: "" });
    await failClosed(boot({ onFailure: "shell" }), DIRS, deps);
    expect(calls).toEqual(["close luks delta", "close vg cryptpilot"]);
  });

  test("outside an initrd nothing is closed and nothing is stopped", async () => {
    const { deps, calls, lines } = fakeDeps({ initrd: false, mapped: ["delta"] });
    await failClosed(DEFAULT_GLOBAL.boot, DIRS, deps);
    expect(calls).toEqual([]);
    expect(lines[0]).toContain("not in an initrd");
  });
});

describe("runStage failures", () => {
  test("an unreadable configuration fails closed with the safe default (power off, no shell)", async () => {
    const cfg = tempDir("fail-cfg-");
    writeFileSync(join(cfg, "fde.toml"), "[rootfs\n");
    writeFileSync(join(cfg, "global.toml"), '[boot]\non_failure = "shell"\n');
    const { deps, calls, lines } = fakeDeps({ mounts: "" });
    expect(await runStage("initrd-fde-before-sysroot", cfg, deps)).toBe(2);
    const text = lines.join("\n");
    expect(text).toContain("cannot load the configuration");
    expect(text).toContain("powering off in 10 s");
    expect(text).not.toMatch(/emergency shell|journalctl/);
    expect(calls.at(-1)).toBe("exec systemctl --force --force poweroff");
  });

  test("a failed step prints its paragraph, then the configured action", async () => {
    const cfg = tempDir("fail-cfg-");
    writeFileSync(join(cfg, "fde.toml"), '[rootfs]\n[delta.encrypt.exec]\ncommand = "/bin/false"\n');
    writeFileSync(join(cfg, "global.toml"), '[boot]\non_failure = "reboot"\nfailure_pause_secs = 30\n');
    // No metadata.toml and no VG on this host: the stage fails at its first steps, in any case
    // before anything opens (the fake deps see no mapping).
    const { deps, calls, lines } = fakeDeps({ mounts: "" });
    const code = await runStage("initrd-fde-after-sysroot", cfg, deps);
    expect(code).not.toBe(0);
    expect(lines.join("\n")).toMatch(/failed at step 1\/\d+ .*\n[\s\S]*rebooting in 30 s/);
    expect(calls.slice(-3)).toEqual(["sleep 30000", "exec sync", "exec systemctl --force --force reboot"]);
  });
});

describe("global.toml [boot]", () => {
  const load = async (text: string) => {
    const cfg = tempDir("global-");
    writeFileSync(join(cfg, "global.toml"), text);
    return (await loadConfig(cfg)).global.boot;
  };

  test("on_failure and failure_pause_secs", async () => {
    expect(await load("")).toEqual(DEFAULT_GLOBAL.boot);
    expect(await load('[boot]\non_failure = "halt"\nfailure_pause_secs = 0\n')).toEqual(
      boot({ onFailure: "halt", failurePauseSecs: 0 }),
    );
  });

  test("refused: an unknown action, a negative or unbounded pause", async () => {
    await expect(load('[boot]\non_failure = "emergency"\n')).rejects.toThrow(/on_failure/);
    await expect(load("[boot]\nfailure_pause_secs = -1\n")).rejects.toThrow(/failure_pause_secs/);
    await expect(load("[boot]\nfailure_pause_secs = 86400\n")).rejects.toThrow(/failure_pause_secs/);
  });
});

describe("dracut module: the initrd carries the no-shell settings", () => {
  /** Sources module-setup.sh and runs cryptpilot_install_failure_action for a global.toml. */
  function install(global: string | undefined) {
    const dir = tempDir("dracut-fail-");
    const cfg = join(dir, "cfg");
    const initdir = join(dir, "initrd");
    mkdirSync(cfg);
    mkdirSync(join(initdir, "etc/cmdline.d"), { recursive: true });
    if (global !== undefined) writeFileSync(join(cfg, "global.toml"), global);
    const script = `source "${ROOT}/dracut-module/91cryptpilot/module-setup.sh"; cryptpilot_install_failure_action`;
    const proc = Bun.spawnSync(["bash", "-c", script], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        CRYPTPILOT_CONFIG_DIR: cfg,
        initdir,
        systemdsystemunitdir: "/usr/lib/systemd/system",
      },
    });
    expect(proc.exitCode).toBe(0);
    const read = (p: string) => {
      const f = join(initdir, p);
      return existsSync(f) ? readFileSync(f, "utf8") : undefined;
    };
    return {
      cmdline: read("etc/cmdline.d/99-cryptpilot-failure.conf"),
      dropin: read("usr/lib/systemd/system/cryptpilot-fde-before-sysroot.service.d/90-failure-action.conf"),
    };
  }

  test("default and unparsable values: rd.shell=0 rd.emergency=poweroff, the units' own poweroff backstop", () => {
    for (const global of [undefined, "", '[boot]\non_failure = "poweroff"\n', "[boot]\non_failure = [1]\n"]) {
      expect(install(global)).toEqual({ cmdline: "rd.shell=0 rd.emergency=poweroff\n", dropin: undefined });
    }
  });

  test("reboot and halt: the same action for dracut's failures and the units' backstop", () => {
    expect(install("[boot]\non_failure = 'reboot' # after the pause\n")).toEqual({
      cmdline: "rd.shell=0 rd.emergency=reboot\n",
      dropin: "[Unit]\nFailureAction=reboot-force\n",
    });
    expect(install('[boot]\n  on_failure="halt"\n').dropin).toBe("[Unit]\nFailureAction=halt-force\n");
  });

  test("shell is the explicit debugging opt-in", () => {
    expect(install('[boot]\non_failure = "shell"\n')).toEqual({
      cmdline: "rd.shell=1\n",
      dropin:
        "[Unit]\nFailureAction=none\nOnFailure=emergency.target\nOnFailureJobMode=replace-irreversibly\n",
    });
  });

  test("the stage units never name emergency.target themselves", () => {
    for (const unit of ["before", "after"]) {
      const text = readFileSync(join(ROOT, `hooks/cryptpilot-fde-${unit}-sysroot.service`), "utf8");
      expect(text).not.toMatch(/^OnFailure=/m);
      expect(text).toMatch(/^FailureAction=poweroff-force$/m);
    }
  });
});

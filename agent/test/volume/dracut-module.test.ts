/**
 * dracut-module/91cryptpilot/module-setup.sh and open_in_initrd volumes: install() run in bash with
 * dracut's helpers recorded instead of copying files into an initrd (the `volumes` VM scenario
 * builds and boots a real one).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "../../..");
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

// dracut's helpers, recorded one call a line; systemctl enable too.
const STUBS = `
inst_simple() { echo "inst_simple $*" >>"$LOG"; }
inst_multiple() { echo "inst_multiple $*" >>"$LOG"; }
inst_binary() { echo "inst_binary $*" >>"$LOG"; }
inst_script() { echo "inst_script $*" >>"$LOG"; }
inst_hook() { echo "inst_hook $*" >>"$LOG"; }
inst_libdir_file() { echo "inst_libdir_file $*" >>"$LOG"; }
instmods() { echo "instmods hostonly=\${hostonly-unset} $*" >>"$LOG"; }
dracut_module_included() { return 1; }
derror() { echo "derror $*" >>"$LOG"; }
fake_systemctl() { echo "systemctl $*" >>"$LOG"; }
`;

interface Run {
  code: number;
  log: string;
  depends: string;
  initdir: string;
}

/** A config dir with fde.toml (when given) and volume files; runs depends() and install(). */
function runModule(fde: string | undefined, volumes: Record<string, string>): Run {
  const dir = mkdtempSync(join(tmpdir(), "vol-dracut-"));
  dirs.push(dir);
  const cfg = join(dir, "cfg");
  mkdirSync(join(cfg, "volumes"), { recursive: true });
  if (fde !== undefined) writeFileSync(join(cfg, "fde.toml"), fde);
  for (const [name, text] of Object.entries(volumes)) writeFileSync(join(cfg, "volumes", name), text);
  const initdir = join(dir, "initrd");
  mkdirSync(initdir);
  const script = `${STUBS}
source "${ROOT}/dracut-module/91cryptpilot/module-setup.sh"
echo "depends: $(depends)" >"$DEPENDS"
installkernel
install`;
  const proc = Bun.spawnSync(["bash", "-c", script], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      LOG: join(dir, "log"),
      DEPENDS: join(dir, "depends"),
      CRYPTPILOT_CONFIG_DIR: cfg,
      CRYPTPILOT_BIN: "/bin/sh",
      SYSTEMCTL: "fake_systemctl",
      initdir,
      moddir: join(ROOT, "hooks"),
      systemdsystemunitdir: "/usr/lib/systemd/system",
      udevrulesdir: "/usr/lib/udev/rules.d",
      // dracut --hostonly: the module must switch it off for what the guest needs.
      hostonly: "yes",
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  const read = (f: string) => {
    try {
      return readFileSync(join(dir, f), "utf8");
    } catch {
      return "";
    }
  };
  return { code: proc.exitCode ?? -1, log: read("log"), depends: read("depends"), initdir };
}

const SCRATCH = `volume = "scratch"\ndev = "/dev/disk/by-id/virtio-scratch"\nauto_open = true\nopen_in_initrd = true\nmakefs = "ext4"\n[encrypt.otp]\n`;
const LATE = `volume = "late"\ndev = "/dev/vdc"\nauto_open = true\n[encrypt.kbs]\nkbs_url = "http://kbs"\nkey_uri = "kbs:///a/b/c"\n`;
const FDE = `[rootfs]\nrw_overlay = "disk"\n[delta]\n[delta.encrypt.exec]\ncommand = "/usr/lib/cryptpilot/bin/key"\n`;

test("volumes alone: the initrd unit and the open_in_initrd files, no FDE units, no network", () => {
  const run = runModule(undefined, { "scratch.toml": SCRATCH, "late.toml": LATE });
  expect(run.code).toBe(0);
  expect(run.log).toMatch(
    /inst_simple \S+\/cfg\/volumes\/scratch\.toml \/etc\/cryptpilot\/volumes\/scratch\.toml/,
  );
  expect(run.log).not.toContain("late.toml");
  expect(run.log).toContain(
    `inst_simple ${ROOT}/hooks/cryptpilot-volumes-initrd.service /usr/lib/systemd/system/cryptpilot-volumes-initrd.service`,
  );
  expect(run.log).toContain("enable cryptpilot-volumes-initrd.service");
  expect(run.log).not.toContain("cryptpilot-fde-before-sysroot");
  // The kbs volume is opened in the booted system: the initrd needs no network for it.
  expect(run.depends).toBe("depends: systemd dm lvm\n");
  const dropin = join(run.initdir, "usr/lib/systemd/system/cryptpilot-volumes-initrd.service.d");
  expect(readFileSync(join(dropin, "devices.conf"), "utf8")).toBe(
    "[Unit]\nWants=dev-disk-by\\x2did-virtio\\x2dscratch.device\nAfter=dev-disk-by\\x2did-virtio\\x2dscratch.device\n",
  );
  expect(() => readFileSync(join(run.initdir, "etc/cmdline.d/90-cryptpilot.conf"))).toThrow();
});

test("a kbs volume in the initrd brings the network, for the volume unit only", () => {
  const early = LATE.replace("auto_open = true\n", "auto_open = true\nopen_in_initrd = true\n");
  const run = runModule(FDE, { "late.toml": early });
  expect(run.code).toBe(0);
  expect(run.depends).toBe("depends: systemd dm lvm network\n");
  expect(run.log).toContain("cryptpilot-volumes-initrd.service.d/network.conf");
  expect(run.log).not.toContain("cryptpilot-fde-before-sysroot.service.d/network.conf");
  // fde.toml is there: the FDE units as always, and the exec command of fde.toml.
  expect(run.log).toContain(
    "enable cryptpilot-fde-before-sysroot.service cryptpilot-fde-after-sysroot.service",
  );
  expect(run.log).toContain("inst_multiple /usr/lib/cryptpilot/bin/key");
});

test("no open_in_initrd volume: the FDE initrd exactly as before, no volume unit", () => {
  const run = runModule(FDE, { "late.toml": LATE });
  expect(run.code).toBe(0);
  expect(run.log).not.toContain("volumes-initrd");
  expect(run.log).not.toContain("/etc/cryptpilot/volumes");
  expect(run.log).toContain(
    "enable cryptpilot-fde-before-sysroot.service cryptpilot-fde-after-sysroot.service",
  );
  expect(readFileSync(join(run.initdir, "etc/cmdline.d/90-cryptpilot.conf"), "utf8")).toContain("rd.lvm=0");
});

test("installkernel: TEE guest drivers, configfs-tsm and configfs with hostonly off, whatever the providers", () => {
  for (const fde of [FDE, undefined]) {
    const run = runModule(fde, {});
    expect(run.code).toBe(0);
    expect(run.log).toContain("instmods hostonly= configfs tsm tsm_report tdx_guest sev-guest\n");
  }
  // The storage modules keep their hostonly='' too (the recorder sees the caller's value otherwise).
  expect(runModule(FDE, {}).log).toMatch(/^instmods hostonly= dm-mod dm-crypt/m);
});

/**
 * The ioctl request numbers and struct layouts in sev-guest.ts / tdx-guest.ts against the kernel's
 * UAPI headers: a C program compiled here prints sizeof/offsetof/the _IOWR values.
 * - <linux/sev-guest.h>: Debian 12's linux-libc-dev (in .ci/apt-packages).
 * - <linux/tdx-guest.h>: only in Debian 13's linux-libc-dev; its .deb is unpacked (not installed)
 *   from $CRYPTPILOT_TRIXIE_LIBC_DEV_DEB or agent/test/attest/fetch-trixie-uapi.sh's cache path.
 * Either check skips with a visible message when its header or gcc is missing.
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SNP_GET_EXT_REPORT, SNP_GET_REPORT, SNP_UAPI } from "../../src/attest/sev-guest.ts";
import { TDX_CMD_GET_REPORT0, TDX_UAPI } from "../../src/attest/tdx-guest.ts";

const haveGcc = spawnSync("gcc", ["--version"]).status === 0;
if (!haveGcc) console.warn("skipping UAPI layout checks: gcc is missing");

/** Compile and run `body` (printf lines "name value") with `includeDir` first on the path. */
function probe(header: string, body: string, includeDir?: string): Record<string, number> {
  const dir = mkdtempSync(join(tmpdir(), "uapi-"));
  const src = join(dir, "probe.c");
  writeFileSync(
    src,
    `#include <stdio.h>\n#include <stddef.h>\n#include <sys/ioctl.h>\n#include <${header}>\nint main(void) {\n${body}\nreturn 0;\n}\n`,
  );
  const args = [...(includeDir ? ["-I", includeDir] : []), "-o", join(dir, "probe"), src];
  const cc = spawnSync("gcc", args, { encoding: "utf8" });
  if (cc.status !== 0) throw new Error(`gcc failed: ${cc.stderr}`);
  const run = spawnSync(join(dir, "probe"), { encoding: "utf8" });
  return Object.fromEntries(
    run.stdout
      .trim()
      .split("\n")
      .map((l) => {
        const [k, v] = l.split(" ");
        return [k!, Number(v)];
      }),
  );
}

const line = (name: string, expr: string) => `printf("${name} %lu\\n", (unsigned long)(${expr}));`;
const off = (s: string, f: string) => line(`${s}.${f}`, `offsetof(struct ${s}, ${f})`);
const size = (s: string) => line(`${s}.size`, `sizeof(struct ${s})`);

const haveSevHeader = existsSync("/usr/include/linux/sev-guest.h");
if (!haveSevHeader)
  console.warn("skipping sev-guest UAPI check: /usr/include/linux/sev-guest.h missing (linux-libc-dev)");

describe.skipIf(!haveGcc || !haveSevHeader)("<linux/sev-guest.h>", () => {
  test("struct sizes, offsets and ioctl numbers match sev-guest.ts", () => {
    const got = probe(
      "linux/sev-guest.h",
      [
        size("snp_report_req"),
        off("snp_report_req", "user_data"),
        off("snp_report_req", "vmpl"),
        off("snp_report_req", "rsvd"),
        size("snp_report_resp"),
        size("snp_guest_request_ioctl"),
        off("snp_guest_request_ioctl", "msg_version"),
        off("snp_guest_request_ioctl", "req_data"),
        off("snp_guest_request_ioctl", "resp_data"),
        off("snp_guest_request_ioctl", "exitinfo2"),
        off("snp_guest_request_ioctl", "fw_error"),
        off("snp_guest_request_ioctl", "vmm_error"),
        size("snp_ext_report_req"),
        off("snp_ext_report_req", "data"),
        off("snp_ext_report_req", "certs_address"),
        off("snp_ext_report_req", "certs_len"),
        line("SNP_GET_REPORT", "SNP_GET_REPORT"),
        line("SNP_GET_EXT_REPORT", "SNP_GET_EXT_REPORT"),
        line("VMM_ERR_INVALID_LEN", "SNP_GUEST_VMM_ERR_INVALID_LEN"),
        line("VMM_ERR_BUSY", "SNP_GUEST_VMM_ERR_BUSY"),
      ].join("\n"),
    );
    const u = SNP_UAPI;
    expect(got).toEqual({
      "snp_report_req.size": u.reportReq.size,
      "snp_report_req.user_data": u.reportReq.user_data,
      "snp_report_req.vmpl": u.reportReq.vmpl,
      "snp_report_req.rsvd": u.reportReq.rsvd,
      "snp_report_resp.size": u.reportResp.size,
      "snp_guest_request_ioctl.size": u.guestRequest.size,
      "snp_guest_request_ioctl.msg_version": u.guestRequest.msg_version,
      "snp_guest_request_ioctl.req_data": u.guestRequest.req_data,
      "snp_guest_request_ioctl.resp_data": u.guestRequest.resp_data,
      "snp_guest_request_ioctl.exitinfo2": u.guestRequest.exitinfo2,
      "snp_guest_request_ioctl.fw_error": u.guestRequest.fw_error,
      "snp_guest_request_ioctl.vmm_error": u.guestRequest.vmm_error,
      "snp_ext_report_req.size": u.extReportReq.size,
      "snp_ext_report_req.data": u.extReportReq.data,
      "snp_ext_report_req.certs_address": u.extReportReq.certs_address,
      "snp_ext_report_req.certs_len": u.extReportReq.certs_len,
      SNP_GET_REPORT: SNP_GET_REPORT,
      SNP_GET_EXT_REPORT: SNP_GET_EXT_REPORT,
      VMM_ERR_INVALID_LEN: 1,
      VMM_ERR_BUSY: 2,
    });
  });
});

/** Default cache of the Debian 13 linux-libc-dev .deb (fetch-trixie-uapi.sh writes it). */
const TRIXIE_DEB_DIR = "/var/cache/cryptpilot-test";

function trixieDeb(): string | undefined {
  const env = process.env.CRYPTPILOT_TRIXIE_LIBC_DEV_DEB;
  if (env) return existsSync(env) ? env : undefined;
  if (!existsSync(TRIXIE_DEB_DIR)) return undefined;
  const deb = readdirSync(TRIXIE_DEB_DIR).find((f) => /^linux-libc-dev_.*\.deb$/.test(f));
  return deb ? join(TRIXIE_DEB_DIR, deb) : undefined;
}

const deb = trixieDeb();
if (!deb) {
  console.warn(
    `skipping tdx-guest UAPI check: no Debian 13 linux-libc-dev .deb (run agent/test/attest/fetch-trixie-uapi.sh, or set CRYPTPILOT_TRIXIE_LIBC_DEV_DEB)`,
  );
}

describe.skipIf(!haveGcc || !deb)("<linux/tdx-guest.h> (Debian 13 linux-libc-dev, unpacked)", () => {
  test("struct tdx_report_req and TDX_CMD_GET_REPORT0 match tdx-guest.ts", () => {
    const dir = mkdtempSync(join(tmpdir(), "trixie-uapi-"));
    const x = spawnSync("dpkg-deb", ["-x", deb!, dir], { encoding: "utf8" });
    expect(x.status).toBe(0);
    // Only tdx-guest.h from it: the rest of the includes stay the build host's (glibc matches those).
    const inc = mkdtempSync(join(tmpdir(), "tdx-inc-"));
    mkdirSync(join(inc, "linux"));
    copyFileSync(join(dir, "usr/include/linux/tdx-guest.h"), join(inc, "linux/tdx-guest.h"));
    const got = probe(
      "linux/tdx-guest.h",
      [
        size("tdx_report_req"),
        off("tdx_report_req", "reportdata"),
        off("tdx_report_req", "tdreport"),
        line("TDX_REPORTDATA_LEN", "TDX_REPORTDATA_LEN"),
        line("TDX_REPORT_LEN", "TDX_REPORT_LEN"),
        line("TDX_CMD_GET_REPORT0", "TDX_CMD_GET_REPORT0"),
      ].join("\n"),
      inc,
    );
    expect(got).toEqual({
      "tdx_report_req.size": TDX_UAPI.reportReq.size,
      "tdx_report_req.reportdata": TDX_UAPI.reportReq.reportdata,
      "tdx_report_req.tdreport": TDX_UAPI.reportReq.tdreport,
      TDX_REPORTDATA_LEN: TDX_UAPI.reportDataLen,
      TDX_REPORT_LEN: TDX_UAPI.reportLen,
      TDX_CMD_GET_REPORT0: TDX_CMD_GET_REPORT0,
    });
  });
});

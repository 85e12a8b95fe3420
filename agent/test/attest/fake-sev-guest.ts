/**
 * A fake /dev/sev-guest for tests: an `Ioctl` that decodes the request structs at the addresses
 * the code under test wrote, and answers as Linux 6.1's sev-guest driver does (the certificate
 * buffer check, INVALID_LEN with the needed length written back into certs_len, the response
 * copied into resp_data). The host's behaviour is configurable, hostile answers included.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Ioctl } from "../../src/attest/ioctl.ts";
import { SNP_GET_EXT_REPORT, SNP_GET_REPORT, SNP_UAPI } from "../../src/attest/sev-guest.ts";
import { ERRNO } from "../../src/libc.ts";

export interface FakeHost {
  /** The signed report template; REPORT_DATA is written at 0x50 from the request. */
  report: Uint8Array;
  /** The certificate table the host serves (undefined: none). */
  certs?: Uint8Array;
  /** The host refuses extended requests (EIO, no firmware error). */
  noExt?: boolean;
  /** Answer BUSY this many times first. */
  busy?: number;
  /** Override the certs_len written back on INVALID_LEN (hostile hosts). */
  neededLen?: (asked: number) => number;
  /** Firmware error to answer with (EIO). */
  fwError?: number;
  /** MSG_REPORT_RSP status / report_size overrides. */
  status?: number;
  reportSize?: number;
  /** Answer with the template as is (a replayed report), ignoring the request's REPORT_DATA. */
  replay?: boolean;
}

export interface FakeSevGuest {
  /** A regular file standing in for the device node. */
  device: string;
  sysRoot: string;
  ioctl: Ioctl;
  /** Each call: "EXT <certs_len>" or "GET". */
  calls: string[];
}

const PAGE = 4096;
const SEV_FW_BLOB_MAX_SIZE = 0x4000;

export function fakeSevGuest(host: FakeHost): FakeSevGuest {
  const sysRoot = mkdtempSync(join(tmpdir(), "fake-sev-"));
  const device = join(sysRoot, "dev/sev-guest");
  mkdirSync(join(sysRoot, "dev"));
  writeFileSync(device, "");
  const memory = new Map<bigint, Uint8Array>();
  let next = 0x10000n;
  const calls: string[] = [];
  let busy = host.busy ?? 0;
  const ioctl: Ioctl = {
    address(buf) {
      const a = next;
      next += 0x100000n;
      memory.set(a, buf);
      return a;
    },
    call(_fd, request, arg) {
      const g = SNP_UAPI.guestRequest;
      const gv = new DataView(arg.buffer, arg.byteOffset, arg.byteLength);
      if (arg.length !== g.size || arg[g.msg_version] !== 1) return ERRNO.EINVAL;
      const req = memory.get(gv.getBigUint64(g.req_data, true));
      const resp = memory.get(gv.getBigUint64(g.resp_data, true));
      if (!req || !resp || resp.length < SNP_UAPI.reportResp.size) return ERRNO.EFAULT;
      const setErr = (fw: number, vmm: number) => {
        gv.setUint32(g.fw_error, fw, true);
        gv.setUint32(g.vmm_error, vmm, true);
      };
      let certsBuf: Uint8Array | undefined;
      if (request === SNP_GET_EXT_REPORT) {
        const x = SNP_UAPI.extReportReq;
        const xv = new DataView(req.buffer, req.byteOffset, req.byteLength);
        const len = xv.getUint32(x.certs_len, true);
        const addr = xv.getBigUint64(x.certs_address, true);
        calls.push(`EXT ${len}`);
        if (host.noExt) {
          setErr(0, 0xff);
          return ERRNO.EIO;
        }
        if (len && addr) {
          if (len > SEV_FW_BLOB_MAX_SIZE || len % PAGE !== 0) return ERRNO.EINVAL;
          certsBuf = memory.get(addr);
          if (!certsBuf || certsBuf.length < len) return ERRNO.EFAULT;
        }
        const certs = host.certs ?? new Uint8Array();
        const needed = Math.ceil(certs.length / PAGE) * PAGE;
        if (needed > (certsBuf ? len : 0)) {
          setErr(0, 1);
          xv.setUint32(x.certs_len, host.neededLen ? host.neededLen(len) : needed, true);
          return ERRNO.EIO;
        }
      } else if (request === SNP_GET_REPORT) {
        calls.push("GET");
      } else {
        return ERRNO.ENOTTY;
      }
      if (busy > 0) {
        busy--;
        setErr(0, 2);
        return ERRNO.EIO;
      }
      if (host.fwError) {
        setErr(host.fwError, 0);
        return ERRNO.EIO;
      }
      setErr(0, 0);
      if (certsBuf && host.certs) {
        certsBuf.fill(0);
        certsBuf.set(host.certs);
      }
      const rv = new DataView(resp.buffer, resp.byteOffset, resp.byteLength);
      rv.setUint32(0, host.status ?? 0, true);
      rv.setUint32(4, host.reportSize ?? 1184, true);
      const report = host.report.slice();
      if (!host.replay) {
        report.set(req.subarray(0, 64), 0x50);
        report.set(req.subarray(64, 68), 0x30); // vmpl
      }
      resp.set(report, 0x20);
      return 0;
    },
  };
  return { device, sysRoot, ioctl, calls };
}

/** The VCEK's certificate-table GUID (GHCB spec), spelled here independently of agent/src/attest/snp.ts. */
export const VCEK_GUID = "63da758de6644564adc5f4b93be8accd";

/** A GHCB certificate table holding one certificate of type `guid` (hex). */
export function certTable(guid: string, cert: Uint8Array): Uint8Array {
  const table = new Uint8Array(48 + cert.length);
  table.set(Buffer.from(guid, "hex"), 0);
  new DataView(table.buffer).setUint32(16, 48, true);
  new DataView(table.buffer).setUint32(20, cert.length, true);
  table.set(cert, 48);
  return table;
}

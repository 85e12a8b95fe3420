/**
 * SEV-SNP attestation report through /dev/sev-guest (the sev-guest driver's ioctls, Linux 5.19+),
 * for kernels without configfs-tsm (before 6.7, e.g. Debian 12's 6.1). SNP_GET_EXT_REPORT gives
 * the report plus the GHCB certificate table the host provisioned (VCEK/VLEK, ASK, ARK); when the
 * host does not serve extended requests, SNP_GET_REPORT gives the report alone and the verifier
 * fetches the VCEK from AMD's KDS. Both are the same PSP-signed report, so this is no downgrade.
 *
 * Layouts and request numbers are <linux/sev-guest.h>'s (checked against the header by
 * agent/test/attest/uapi.test.ts). Everything the device returns is host-influenced: lengths are
 * bounded before use and the report is checked by the caller.
 */
import { closeSync, openSync } from "node:fs";
import { FdeError } from "../errors.ts";
import { ERRNO, errnoName } from "../libc.ts";
import { log } from "../log.ts";
import { type Ioctl, iowr, kernelBuffer, libcIoctl } from "./ioctl.ts";
import { TEE_DRIVERS } from "./platform.ts";

export const SEV_GUEST_DEVICE = TEE_DRIVERS.snp.device;

/** struct sizes and offsets from <linux/sev-guest.h> (x86-64: SEV-SNP guests exist only there). */
export const SNP_UAPI = {
  reportReq: { size: 96, user_data: 0, vmpl: 64, rsvd: 68 },
  reportResp: { size: 4000 },
  guestRequest: {
    size: 32,
    msg_version: 0,
    req_data: 8,
    resp_data: 16,
    exitinfo2: 24,
    fw_error: 24,
    vmm_error: 28,
  },
  extReportReq: { size: 112, data: 0, certs_address: 96, certs_len: 104 },
} as const;

export const SNP_GET_REPORT = iowr("S", 0x0, SNP_UAPI.guestRequest.size);
export const SNP_GET_EXT_REPORT = iowr("S", 0x2, SNP_UAPI.guestRequest.size);

/** vmm_error values (SNP_GUEST_VMM_ERR_*): certificate buffer too small; host busy (rate limit). */
export const SNP_GUEST_VMM_ERR_INVALID_LEN = 1;
export const SNP_GUEST_VMM_ERR_BUSY = 2;

/** MSG_REPORT_RSP inside snp_report_resp.data: status, report_size, 24 reserved, the report. */
const RSP_STATUS = 0;
const RSP_REPORT_SIZE = 4;
const RSP_REPORT = 0x20;
export const SNP_REPORT_BYTES = 1184;

const PAGE = 4096;
/**
 * First certificate buffer: one page. A VCEK + ASK + ARK table needs two, so on hosts that serve
 * certificates the kernel answers INVALID_LEN with the size it needs and we ask again once.
 */
export const SNP_CERTS_INITIAL_BYTES = PAGE;
/**
 * Largest certificate buffer we allocate when the host asks for more. The kernel itself refuses
 * more than 16 KiB (SEV_FW_BLOB_MAX_SIZE); 64 KiB leaves room for a kernel that raises it while
 * keeping a hostile size answer from costing memory.
 */
export const SNP_CERTS_MAX_BYTES = 64 * 1024;
/** Host busy (VMM_ERR_BUSY or EAGAIN): retries and delay, bounded to a few seconds in total. */
export const SNP_BUSY_RETRIES = 4;
export const SNP_BUSY_DELAY_MS = 1000;
/** Grow rounds: the host may legitimately change its table between two calls, not forever. */
const GROW_ROUNDS = 2;

export interface SevGuestOptions {
  /** Device path (default /dev/sev-guest). */
  device?: string;
  /** The ioctl implementation (default: libc through bun:ffi). */
  ioctl?: Ioctl;
  /** Sleep between busy retries (tests pass a no-op). */
  sleep?: (ms: number) => Promise<void>;
}

export interface SnpDeviceReport {
  /** The 1184-byte ATTESTATION_REPORT. */
  report: Uint8Array;
  /** The GHCB certificate table, or undefined when the host provided none. */
  certs?: Uint8Array;
}

interface CallResult {
  errno: number;
  fwError: number;
  vmmError: number;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

class Device {
  constructor(
    readonly path: string,
    readonly fd: number,
    readonly io: Ioctl,
  ) {}

  /** One guest request; `req` is the request struct, `resp` receives snp_report_resp. */
  call(request: number, req: Uint8Array, resp: Uint8Array): CallResult {
    const g = SNP_UAPI.guestRequest;
    const arg = kernelBuffer(g.size);
    const view = new DataView(arg.buffer);
    arg[g.msg_version] = 1;
    view.setBigUint64(g.req_data, this.io.address(req), true);
    view.setBigUint64(g.resp_data, this.io.address(resp), true);
    const errno = this.io.call(this.fd, request, arg);
    return { errno, fwError: view.getUint32(g.fw_error, true), vmmError: view.getUint32(g.vmm_error, true) };
  }

  failure(what: string, r: CallResult): FdeError {
    return new FdeError(
      `SEV-SNP: ${what} on ${this.path} failed: ${errnoName(r.errno)}, firmware error ${hex(r.fwError)}, VMM error ${hex(r.vmmError)}`,
      {
        hint: "the host refused the guest request; check the SEV-SNP firmware and the hypervisor's SNP support",
      },
    );
  }
}

function reportRequest(reportData: Uint8Array, vmpl: number): Uint8Array {
  if (reportData.length !== 64)
    throw new FdeError(`SEV-SNP: REPORT_DATA must be 64 bytes, got ${reportData.length}`);
  const req = kernelBuffer(SNP_UAPI.reportReq.size);
  req.set(reportData, SNP_UAPI.reportReq.user_data);
  new DataView(req.buffer).setUint32(SNP_UAPI.reportReq.vmpl, vmpl, true);
  return req;
}

/** The report out of snp_report_resp, refusing a firmware error status or a wrong size. */
export function reportFromResponse(resp: Uint8Array, path: string): Uint8Array {
  const view = new DataView(resp.buffer, resp.byteOffset, resp.byteLength);
  const status = view.getUint32(RSP_STATUS, true);
  const size = view.getUint32(RSP_REPORT_SIZE, true);
  if (status !== 0) throw new FdeError(`SEV-SNP: ${path} answered with firmware status ${hex(status)}`);
  if (size !== SNP_REPORT_BYTES) {
    throw new FdeError(`SEV-SNP: ${path} answered with a ${size}-byte report, expected ${SNP_REPORT_BYTES}`);
  }
  return resp.slice(RSP_REPORT, RSP_REPORT + SNP_REPORT_BYTES);
}

const isBusy = (r: CallResult) => r.errno === ERRNO.EAGAIN || r.vmmError === SNP_GUEST_VMM_ERR_BUSY;

/**
 * The host did not serve the extended request at all (not a size or busy answer, and the firmware
 * was not reached): the driver lacks the ioctl, or the hypervisor refused EXT_GUEST_REQUEST.
 */
const extUnsupported = (r: CallResult) =>
  r.errno === ERRNO.ENOTTY ||
  r.errno === ERRNO.EOPNOTSUPP ||
  (r.errno === ERRNO.EIO && r.fwError === 0 && r.vmmError !== SNP_GUEST_VMM_ERR_INVALID_LEN && !isBusy(r));

async function withBusyRetry(
  call: () => CallResult,
  sleep: (ms: number) => Promise<void>,
): Promise<CallResult> {
  let r = call();
  for (let i = 0; i < SNP_BUSY_RETRIES && isBusy(r); i++) {
    await sleep(SNP_BUSY_DELAY_MS);
    r = call();
  }
  return r;
}

async function extReport(
  dev: Device,
  reportData: Uint8Array,
  vmpl: number,
  sleep: (ms: number) => Promise<void>,
) {
  const x = SNP_UAPI.extReportReq;
  let certsLen = SNP_CERTS_INITIAL_BYTES;
  for (let round = 0; ; round++) {
    const req = kernelBuffer(x.size);
    req.set(reportRequest(reportData, vmpl), x.data);
    const certs = kernelBuffer(certsLen);
    const view = new DataView(req.buffer);
    view.setBigUint64(x.certs_address, dev.io.address(certs), true);
    view.setUint32(x.certs_len, certsLen, true);
    const resp = kernelBuffer(SNP_UAPI.reportResp.size);
    const r = await withBusyRetry(() => dev.call(SNP_GET_EXT_REPORT, req, resp), sleep);
    if (r.errno === 0) return { r, resp, certs };
    if (r.vmmError !== SNP_GUEST_VMM_ERR_INVALID_LEN) return { r, resp, certs: undefined };
    // The kernel wrote the size the host needs back into certs_len.
    const needed = view.getUint32(x.certs_len, true);
    if (needed <= certsLen || needed % PAGE !== 0 || needed > SNP_CERTS_MAX_BYTES || round >= GROW_ROUNDS) {
      throw new FdeError(
        `SEV-SNP: ${dev.path} asks for a ${needed}-byte certificate buffer after ${certsLen} bytes (at most ${SNP_CERTS_MAX_BYTES}, page-aligned, growing at most ${GROW_ROUNDS} times)`,
      );
    }
    certsLen = needed;
  }
}

/**
 * The report for `reportData` (64 bytes) at `vmpl` through /dev/sev-guest: SNP_GET_EXT_REPORT
 * (growing the certificate buffer to the size the kernel reports), SNP_GET_REPORT when the host
 * does not serve extended requests.
 */
export async function snpReportFromDevice(
  reportData: Uint8Array,
  options: SevGuestOptions & { vmpl?: number } = {},
): Promise<SnpDeviceReport> {
  const path = options.device ?? SEV_GUEST_DEVICE;
  const sleep = options.sleep ?? ((ms) => Bun.sleep(ms));
  const vmpl = options.vmpl ?? 0;
  let fd: number;
  try {
    fd = openSync(path, "r+");
  } catch (cause) {
    throw new FdeError(`SEV-SNP: cannot open ${path} (${(cause as Error).message})`, {
      cause,
      hint: "load the sev-guest module (kernel >= 5.19), or use a kernel with configfs-tsm (>= 6.7)",
    });
  }
  try {
    const dev = new Device(path, fd, options.ioctl ?? libcIoctl());
    const ext = await extReport(dev, reportData, vmpl, sleep);
    if (ext.r.errno === 0) {
      const certs = ext.certs?.some((b) => b !== 0) ? ext.certs : undefined;
      return { report: reportFromResponse(ext.resp, path), certs };
    }
    if (!extUnsupported(ext.r)) throw dev.failure("SNP_GET_EXT_REPORT", ext.r);
    log.warn(
      `SEV-SNP: ${path} refused SNP_GET_EXT_REPORT (${errnoName(ext.r.errno)}, VMM error ${hex(ext.r.vmmError)}); using SNP_GET_REPORT, the report without the host's certificates`,
    );
    const req = reportRequest(reportData, vmpl);
    const resp = kernelBuffer(SNP_UAPI.reportResp.size);
    const r = await withBusyRetry(() => dev.call(SNP_GET_REPORT, req, resp), sleep);
    if (r.errno !== 0) throw dev.failure("SNP_GET_REPORT (after SNP_GET_EXT_REPORT was refused)", r);
    return { report: reportFromResponse(resp, path) };
  } finally {
    closeSync(fd);
  }
}

/**
 * /dev/tdx_guest (the tdx_guest driver, mainline since Linux 6.2). Its only mainline ioctl,
 * TDX_CMD_GET_REPORT0, returns a TDREPORT: MAC'd with a key only this CPU's TDX module and the
 * local quoting enclave hold, so a remote verifier cannot check it. A quote needs the host's
 * quoting service, which mainline reaches only through configfs-tsm (tsm + tdx_guest, Linux 6.7+).
 * Intel's pre-merge guest trees had a TDX_CMD_GET_QUOTE ioctl, but its number and struct changed
 * between versions and it never reached mainline, so it is not used here: without configfs-tsm a
 * TDX guest fails with `tdxQuoteUnavailable`.
 *
 * Layout and request number are <linux/tdx-guest.h>'s (checked by agent/test/attest/uapi.test.ts).
 */
import { closeSync, openSync } from "node:fs";
import { FdeError } from "../errors.ts";
import { errnoName } from "../libc.ts";
import { type Ioctl, iowr, kernelBuffer, libcIoctl } from "./ioctl.ts";
import { TEE_DRIVERS } from "./platform.ts";

export const TDX_GUEST_DEVICE = TEE_DRIVERS.tdx.device;

/** struct tdx_report_req: reportdata[TDX_REPORTDATA_LEN], tdreport[TDX_REPORT_LEN]. */
export const TDX_UAPI = {
  reportReq: { size: 1088, reportdata: 0, tdreport: 64 },
  reportDataLen: 64,
  reportLen: 1024,
} as const;

export const TDX_CMD_GET_REPORT0 = iowr("T", 1, TDX_UAPI.reportReq.size);

export interface TdxGuestOptions {
  device?: string;
  ioctl?: Ioctl;
}

/** The TDREPORT for `reportData` (64 bytes): local use only, it cannot be verified remotely. */
export function tdxReportFromDevice(reportData: Uint8Array, options: TdxGuestOptions = {}): Uint8Array {
  const path = options.device ?? TDX_GUEST_DEVICE;
  if (reportData.length !== TDX_UAPI.reportDataLen) {
    throw new FdeError(`TDX: REPORTDATA must be ${TDX_UAPI.reportDataLen} bytes, got ${reportData.length}`);
  }
  let fd: number;
  try {
    fd = openSync(path, "r+");
  } catch (cause) {
    throw new FdeError(`TDX: cannot open ${path} (${(cause as Error).message})`, {
      cause,
      hint: "load the tdx_guest module (Linux >= 6.2)",
    });
  }
  try {
    const req = kernelBuffer(TDX_UAPI.reportReq.size);
    req.set(reportData, TDX_UAPI.reportReq.reportdata);
    const errno = (options.ioctl ?? libcIoctl()).call(fd, TDX_CMD_GET_REPORT0, req);
    if (errno !== 0) throw new FdeError(`TDX: TDX_CMD_GET_REPORT0 on ${path} failed: ${errnoName(errno)}`);
    return req.slice(TDX_UAPI.reportReq.tdreport, TDX_UAPI.reportReq.tdreport + TDX_UAPI.reportLen);
  } finally {
    closeSync(fd);
  }
}

/** The error for a TDX guest whose kernel has /dev/tdx_guest but no configfs-tsm. */
export function tdxQuoteUnavailable(device: string, tsmRoot: string): FdeError {
  return new FdeError(
    `TDX: this kernel offers no TD quote: ${device} gives only a TDREPORT (TDX_CMD_GET_REPORT0), which a remote verifier cannot check, and there is no configfs-tsm under ${tsmRoot}`,
    {
      hint: "TDX attestation needs Linux >= 6.7 with the tsm (tsm_report) and tdx_guest modules and configfs mounted; older kernels cannot get a quote through a mainline interface",
    },
  );
}

/**
 * The time this binary was built, as a floor for the clock: a guest whose clock says earlier is
 * certainly wrong (no RTC, a restored snapshot, a host that set it back). `make build` defines
 * CRYPTPILOT_BUILD_EPOCH (Unix seconds: SOURCE_DATE_EPOCH, else the HEAD commit's time, so
 * builds stay reproducible); run from source, SOURCE_FLOOR_EPOCH stands in.
 */
declare const CRYPTPILOT_BUILD_EPOCH: number | undefined;

/** 2026-01-01T00:00:00Z: earlier than any build of this code; used when run from source. */
export const SOURCE_FLOOR_EPOCH = 1_767_225_600;

/** Unix ms of the build (or SOURCE_FLOOR_EPOCH when not built by make). */
export const BUILD_TIME_MS: number =
  (typeof CRYPTPILOT_BUILD_EPOCH === "number" ? CRYPTPILOT_BUILD_EPOCH : SOURCE_FLOOR_EPOCH) * 1000;

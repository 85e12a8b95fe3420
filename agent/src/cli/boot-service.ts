import { notYetAvailable } from "./not-yet.ts";

export default notYetAvailable(
  ["boot-service"],
  "Run one initrd boot stage (used by the systemd units in the initrd)",
);

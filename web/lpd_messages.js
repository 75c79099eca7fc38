// LPD messages: warnings the nodes send while they run ("the mask covers no token ...") shown as a
// toast on the canvas. The server pushes them as "lpd.message" events (nodes/runtime.py `notify`);
// the core frontend does not display a node's ui.text, so this is how they reach the user.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

app.registerExtension({
  name: "lpd.messages",
  setup() {
    api.addEventListener("lpd.message", (event) => {
      const { summary, detail } = event.detail ?? {};
      const toast = app.extensionManager?.toast;
      if (toast?.add) {
        toast.add({ severity: "warn", summary: summary ?? "LPD", detail, life: 10000 });
      } else {
        console.warn(`[LPD] ${summary}: ${detail}`);
      }
    });
  },
});

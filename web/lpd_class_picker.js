// LPD class picker: a button under the LPD Sampler's widgets that shows the chosen class by name
// ("207: golden retriever") and opens a search box over the class names of the connected model.
// The workflow keeps storing the plain integer `class_index`, so shared JSON stays readable and
// works without this extension. Names come from GET /lpd/classes?model=<model loader value>
// (ImageNet-1k for published models, the model's own names for the demo).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SAMPLERS = ["LPDSampler", "LPDEditSampler"];
const LOADER = "LPDModelLoader";
const MAX_SHOWN = 80;
const classCache = new Map(); // model value -> {names, aliases, num_classes} | "loading" | "failed"

function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

// The model loader's value feeding this sampler, when the link comes straight from one.
function upstreamModelValue(node) {
  const slot = node.inputs?.findIndex((input) => input.name === "model") ?? -1;
  if (slot < 0) return null;
  let source = null;
  try {
    source = node.getInputNode(slot);
  } catch {
    return null;
  }
  if (!source || (source.type ?? source.comfyClass) !== LOADER) return null;
  return widget(source, "model_name")?.value ?? null;
}

function classesFor(node) {
  const key = upstreamModelValue(node) ?? "";
  const cached = classCache.get(key);
  if (cached !== undefined) return typeof cached === "object" ? cached : null;
  classCache.set(key, "loading");
  api
    .fetchApi(`/lpd/classes?model=${encodeURIComponent(key)}`)
    .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
    .then((data) => classCache.set(key, data))
    .catch(() => classCache.set(key, "failed"))
    .finally(() => app.graph?.setDirtyCanvas(true, false));
  return null;
}

function labelFor(node) {
  const index = Number(widget(node, "class_index")?.value ?? 0);
  const classes = classesFor(node);
  const many = String(widget(node, "classes")?.value ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  if (many.length) {
    // the 'classes' text replaces class_index: name what it asks for
    const named = many.map((item) => (/^\d+$/.test(item) ? classes?.names?.[Number(item)] ?? item : item));
    const shown = named.slice(0, 3).join(", ") + (named.length > 3 ? ", …" : "");
    return `${many.length} ${many.length === 1 ? "class" : "classes"}: ${shown}`;
  }
  if (!classes) return `class ${index}  (pick…)`;
  if (classes.num_classes != null && index >= classes.num_classes) {
    return `class ${index}: out of range (0–${classes.num_classes - 1})`;
  }
  const name = classes.names?.[index];
  return name ? `${index}: ${name}` : `class ${index}  (pick…)`;
}

function closePicker() {
  document.getElementById("lpd-class-picker")?.remove();
}

function openPicker(node, event) {
  closePicker();
  const classes = classesFor(node) ?? { names: null, aliases: null, num_classes: 1000 };
  const count = classes.names?.length ?? classes.num_classes ?? 1000;
  const entries = Array.from({ length: count }, (_, i) => {
    const name = classes.names?.[i] ?? "";
    const aliases = classes.aliases?.[i] ?? [];
    return { index: i, label: name ? `${i}: ${name}` : `${i}`, text: [String(i), name, ...aliases].join(" | ").toLowerCase() };
  });

  const box = document.createElement("div");
  box.id = "lpd-class-picker";
  const x = Math.min((event?.clientX ?? 200) + 8, window.innerWidth - 340);
  const y = Math.min((event?.clientY ?? 200) + 8, window.innerHeight - 420);
  Object.assign(box.style, {
    position: "fixed", left: `${Math.max(0, x)}px`, top: `${Math.max(0, y)}px`, zIndex: 10000,
    width: "320px", background: "#222", color: "#ddd", border: "1px solid #555", borderRadius: "6px",
    padding: "6px", font: "13px sans-serif", boxShadow: "0 4px 16px rgba(0,0,0,.5)",
  });
  const input = document.createElement("input");
  input.type = "text";
  input.placeholder = "search classes (name or index)";
  Object.assign(input.style, { width: "100%", boxSizing: "border-box", padding: "4px", background: "#111", color: "#eee", border: "1px solid #444" });
  const list = document.createElement("div");
  Object.assign(list.style, { maxHeight: "340px", overflowY: "auto", marginTop: "4px" });
  const hint = document.createElement("div");
  hint.textContent = listInUse()
    ? "'classes' is in use: click adds to it (empty it to use class_index) · Esc: close"
    : "Enter/click: set class · Shift+click: add to 'classes' · Esc: close";
  Object.assign(hint.style, { fontSize: "11px", opacity: 0.7, marginTop: "4px" });

  // The rule the sampler states: `classes`, when not empty, replaces class_index. So while it is set a
  // pick goes into it (never silently into the unused class_index).
  const listInUse = () => String(widget(node, "classes")?.value ?? "").trim() !== "";
  const choose = (index, append) => {
    if (append || listInUse()) {
      const many = widget(node, "classes");
      if (many) {
        const text = String(many.value ?? "").trim();
        many.value = text ? `${text}, ${index}` : String(index);
        many.callback?.(many.value);
      }
      if (!append) closePicker();
    } else {
      const target = widget(node, "class_index");
      if (target) {
        target.value = index;
        target.callback?.(index);
      }
      closePicker();
    }
    node.setDirtyCanvas?.(true, true);
  };

  let shown = [];
  const render = () => {
    const query = input.value.trim().toLowerCase();
    shown = entries.filter((e) => !query || e.text.includes(query)).slice(0, MAX_SHOWN);
    list.replaceChildren(
      ...shown.map((e) => {
        const row = document.createElement("div");
        row.textContent = e.label;
        Object.assign(row.style, { padding: "2px 4px", cursor: "pointer", whiteSpace: "nowrap", overflow: "hidden", textOverflow: "ellipsis" });
        row.onmouseenter = () => (row.style.background = "#444");
        row.onmouseleave = () => (row.style.background = "");
        row.onmousedown = (ev) => {
          ev.preventDefault();
          choose(e.index, ev.shiftKey);
        };
        return row;
      }),
    );
  };
  input.oninput = render;
  input.onkeydown = (ev) => {
    ev.stopPropagation(); // keep ComfyUI's keyboard shortcuts out of the search box
    if (ev.key === "Escape") closePicker();
    if (ev.key === "Enter" && shown.length) choose(shown[0].index, ev.shiftKey);
  };
  box.append(input, list, hint);
  document.body.append(box);
  render();
  input.focus();
  const outside = (ev) => {
    if (!box.contains(ev.target)) {
      closePicker();
      document.removeEventListener("mousedown", outside, true);
    }
  };
  setTimeout(() => document.addEventListener("mousedown", outside, true), 0);
}

function addPicker(node) {
  if (!widget(node, "class_index") || node.widgets.some((w) => w.name === "lpd_class_picker")) return;
  const button = node.addWidget("button", "lpd_class_picker", null, (_w, _canvas, _node, _pos, event) =>
    openPicker(node, event),
  );
  button.serialize = false; // not part of widgets_values: the workflow stores class_index only
  if (button.options) button.options.serialize = false;
  // The label is computed when drawn, so it follows edits, workflow loads and model changes.
  Object.defineProperty(button, "label", { get: () => labelFor(node), set: () => {}, configurable: true });
}

app.registerExtension({
  name: "lpd.classPicker",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!SAMPLERS.includes(nodeData?.name)) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      try {
        addPicker(this);
      } catch (error) {
        console.warn("[LPD] class picker not added:", error);
      }
      return result;
    };
  },
  setup() {
    console.log("[LPD] class picker loaded");
  },
});

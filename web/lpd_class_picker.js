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
const classCache = new Map(); // model value -> {names, aliases, num_classes} | "failed"
const classRequests = new Map(); // model value -> Promise of its class names, while or after they load
// Where the artist last pressed: Nodes 2.0 calls a button's callback without the click event, and the
// picker opens next to the button all the same.
const pointer = { x: 200, y: 200 };
window.addEventListener("pointerdown", (event) => Object.assign(pointer, { x: event.clientX, y: event.clientY }), true);

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

// The class names for a model value, fetched once; every label is brought up to date when they arrive.
function loadClasses(key) {
  if (!classRequests.has(key)) {
    classRequests.set(key, api
      .fetchApi(`/lpd/classes?model=${encodeURIComponent(key)}`)
      .then((response) => (response.ok ? response.json() : Promise.reject(response.status)))
      .then((data) => classCache.set(key, data))
      .catch(() => classCache.set(key, "failed"))
      .finally(refreshAllLabels));
  }
  return classRequests.get(key);
}

// The names for this sampler's model when they are loaded, else null (and they start loading).
function classesFor(node) {
  const key = upstreamModelValue(node) ?? "";
  const cached = classCache.get(key);
  if (cached === undefined) loadClasses(key);
  return typeof cached === "object" ? cached : null;
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

// The button's label is a plain value written here whenever what it names may have changed (a widget edit, a
// workflow load, a new link, the names arriving). Nodes 2.0 shows the frontend's stored copy of the label,
// which only such a write updates; a computed property would be read once and go stale there.
function refreshLabel(node) {
  const button = widget(node, "lpd_class_picker");
  if (!button) return;
  const text = labelFor(node);
  if (button.label !== text) button.label = text;
  node.setDirtyCanvas?.(true, false);
}

function refreshAllLabels() {
  for (const node of app.graph?.nodes ?? []) {
    if (SAMPLERS.includes(node.comfyClass ?? node.type)) refreshLabel(node);
  }
}

// Calls `after` once `object[method]` has run, keeping what it did and returned.
function chain(object, method, after) {
  const original = object[method];
  object[method] = function () {
    const result = original?.apply(this, arguments);
    after.call(this);
    return result;
  };
}

function closePicker() {
  document.getElementById("lpd-class-picker")?.remove();
}

function entriesFor(classes) {
  const known = classes ?? { names: null, aliases: null, num_classes: 1000 };
  const count = known.names?.length ?? known.num_classes ?? 1000;
  return Array.from({ length: count }, (_, i) => {
    const name = known.names?.[i] ?? "";
    const aliases = known.aliases?.[i] ?? [];
    return { index: i, label: name ? `${i}: ${name}` : `${i}`, text: [String(i), name, ...aliases].join(" | ").toLowerCase() };
  });
}

function openPicker(node, event) {
  closePicker();
  // The rule the sampler states: `classes`, when not empty, replaces class_index. So while it is set a
  // pick goes into it (never silently into the unused class_index).
  const listInUse = () => String(widget(node, "classes")?.value ?? "").trim() !== "";
  let entries = entriesFor(classesFor(node));

  const box = document.createElement("div");
  box.id = "lpd-class-picker";
  const x = Math.min((event?.clientX ?? pointer.x) + 8, window.innerWidth - 340);
  const y = Math.min((event?.clientY ?? pointer.y) + 8, window.innerHeight - 420);
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
  if (!classesFor(node)) {
    // opened before the names arrived: search them as soon as they do
    loadClasses(upstreamModelValue(node) ?? "").then(() => {
      if (!box.isConnected) return;
      entries = entriesFor(classesFor(node));
      render();
    });
  }
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
  for (const name of ["class_index", "classes"]) {
    const edited = widget(node, name);
    if (edited) chain(edited, "callback", () => refreshLabel(node));
  }
  refreshLabel(node);
}

app.registerExtension({
  name: "lpd.classPicker",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name === LOADER) {
      // another model: other class names on the samplers it feeds
      chain(nodeType.prototype, "onNodeCreated", function () {
        const model = widget(this, "model_name");
        if (model) chain(model, "callback", refreshAllLabels);
      });
      return;
    }
    if (!SAMPLERS.includes(nodeData?.name)) return;
    chain(nodeType.prototype, "onNodeCreated", function () {
      try {
        addPicker(this);
      } catch (error) {
        console.warn("[LPD] class picker not added:", error);
      }
    });
    // widget values set by a workflow load, and a model linked or unlinked
    chain(nodeType.prototype, "onConfigure", function () {
      refreshLabel(this);
    });
    chain(nodeType.prototype, "onConnectionsChange", function () {
      refreshLabel(this);
    });
  },
  setup() {
    console.log("[LPD] class picker loaded");
  },
});

// Validation of Kubernetes objects against the API's OpenAPI schemas, as
// packaged by kubernetes-models (Kubernetes 1.27's schemas compiled to
// ajv validators: types, required fields, enums, formats such as
// quantities and int-or-string).
//
// Those schemas allow unknown fields (the API server only drops them, or
// warns), so a misspelt field (`readinesProbe`) would pass.  `kubectl
// apply` rejects such fields, and so does strictFields() below: it walks an
// object along the package's TypeScript declarations (one interface per
// schema definition, the same generated source) and reports every key the
// definition does not declare.
import { readFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
const pkgDir = path.dirname(require.resolve("kubernetes-models/package.json"));
const nodeModules = path.dirname(pkgDir);

// "apps/v1" -> "apps/v1", "v1" -> "v1" (the core group has no prefix)
function modelPath(apiVersion, kind) {
    return `${apiVersion}/${kind}`;
}

// Schema validation: throws with ajv's messages when obj is invalid.
export async function validateSchema(obj) {
    if (!obj || typeof obj.apiVersion !== "string" || typeof obj.kind !== "string")
        throw new Error("not a Kubernetes object (apiVersion and kind needed)");
    const rel = modelPath(obj.apiVersion, obj.kind);
    if (!existsSync(path.join(pkgDir, rel + ".mjs")))
        throw new Error(`no schema for ${obj.apiVersion} ${obj.kind} in kubernetes-models`);
    const mod = await import(`kubernetes-models/${rel}`);
    const Model = mod[obj.kind];
    new Model(structuredClone(obj)).validate();
}

// ---- strict fields: the declarations as a tree of interfaces ----

const declCache = new Map();

// The declaration file an import names, seen from the file `from`.
function resolveDecl(spec, from) {
    if (spec.startsWith(".")) return path.resolve(path.dirname(from), spec + ".d.ts");
    return path.join(nodeModules, spec + ".d.ts");
}

// { props: Map(name -> type text), imports: Map(name -> file) } for the
// interface a declaration file exports, or null for a type alias (a leaf:
// Quantity, IntOrString, Time).
function loadDecl(file) {
    if (declCache.has(file)) return declCache.get(file);
    const src = readFileSync(file, "utf8");
    const imports = new Map();
    for (const m of src.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm)) imports.set(m[1], resolveDecl(m[2], file));
    let decl = null;
    const body = src.match(/^export interface I\w+(?: extends [\w, ]+)? \{\n([\s\S]*?)^\}/m);
    if (body) {
        const props = new Map();
        // one property per chunk starting at four spaces and a quote; a
        // map type spans several lines
        const code = body[1].replace(/^\s*(\/\*\*|\*).*\n/gm, "");
        for (const chunk of code.split(/\n(?= {4}")/)) {
            const m = chunk.match(/^ {4}"([^"]+)"\??: ([\s\S]*);\s*$/);
            if (m) props.set(m[1], m[2].replace(/\s+/g, " ").trim());
        }
        decl = { props, imports };
    }
    declCache.set(file, decl);
    return decl;
}

function walkType(type, decl, value, at, out) {
    let m;
    if ((m = type.match(/^Array<(.+)>$/))) {
        if (Array.isArray(value)) value.forEach((v, i) => walkType(m[1], decl, v, `${at}/${i}`, out));
    } else if ((m = type.match(/^\{ \[key: string\]: (.+); \}$/))) {
        if (value && typeof value === "object")
            for (const [k, v] of Object.entries(value)) walkType(m[1], decl, v, `${at}/${k}`, out);
    } else if (decl.imports.has(type)) {
        walkObject(decl.imports.get(type), value, at, out);
    } // else a primitive or a union of literals: the schema checks it
}

function walkObject(file, value, at, out) {
    const decl = loadDecl(file);
    if (!decl || !value || typeof value !== "object" || Array.isArray(value)) return;
    for (const [k, v] of Object.entries(value)) {
        const type = decl.props.get(k);
        if (type === undefined) out.push(`${at}/${k}: unknown field`);
        else walkType(type, decl, v, `${at}/${k}`, out);
    }
}

// The fields of obj its API version does not declare, as "path: unknown field".
export function strictFields(obj) {
    const file = path.join(pkgDir, modelPath(obj.apiVersion, obj.kind) + ".d.ts");
    if (!existsSync(file)) return [`no declaration for ${obj.apiVersion} ${obj.kind}`];
    const out = [];
    walkObject(file, obj, "", out);
    return out;
}

// Both checks; a list of problems (empty: valid).
export async function validate(obj) {
    const problems = [];
    try {
        await validateSchema(obj);
    } catch (e) {
        problems.push(String(e.message || e));
    }
    if (obj && obj.apiVersion && obj.kind) problems.push(...strictFields(obj));
    return problems;
}

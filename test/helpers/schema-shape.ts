import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import type pg from "pg";

/**
 * The shape of a Postgres schema (tables, columns with type, nullability and
 * default, indexes with uniqueness, column order and the predicate of a
 * partial index, foreign keys with their actions, enums), read two ways so
 * they can be compared: from schema.prisma through Prisma's own WebAssembly
 * schema tooling (the DMMF), and from a live database's catalogs. The DMMF
 * leaves out a partial index's `where: raw("…")`: that one is read from the
 * index's own declaration in the schema text.
 */
export interface SchemaShape {
  enums: Record<string, string[]>;
  tables: Record<string, TableShape>;
}

interface TableShape {
  columns: Record<string, { type: string; nullable: boolean; default: string | null }>;
  indexes: Record<string, { unique: boolean; primary: boolean; columns: string[]; where: string | null }>;
  foreignKeys: Record<
    string,
    { columns: string[]; references: string; referencedColumns: string[]; onDelete: string; onUpdate: string }
  >;
}

interface DmmfField {
  name: string;
  dbName?: string | null;
  kind: "scalar" | "object" | "enum";
  type: string;
  isRequired: boolean;
  isList: boolean;
  isUpdatedAt: boolean;
  nativeType?: [string, string[]] | null;
  default?: unknown;
  relationFromFields?: string[];
  relationToFields?: string[];
  relationOnDelete?: string;
  relationOnUpdate?: string;
}

interface DmmfModel {
  name: string;
  dbName: string | null;
  fields: DmmfField[];
}

interface DmmfIndex {
  model: string;
  type: "id" | "unique" | "normal" | "fulltext";
  dbName?: string | null;
  fields: { name: string }[];
}

interface Dmmf {
  datamodel: {
    enums: { name: string; dbName: string | null; values: { name: string; dbName: string | null }[] }[];
    models: DmmfModel[];
    indexes: DmmfIndex[];
  };
}

const require = createRequire(import.meta.url);

export async function shapeFromPrismaSchema(schemaPath: string): Promise<SchemaShape> {
  const wasm = require("@prisma/prisma-schema-wasm") as { get_dmmf(params: string): string };
  const text = await readFile(schemaPath, "utf8");
  const dmmf = JSON.parse(wasm.get_dmmf(JSON.stringify({ prismaSchema: [["schema.prisma", text]] }))) as Dmmf;
  const { models, enums, indexes } = dmmf.datamodel;

  const tableOf = (model: DmmfModel) => model.dbName ?? model.name;
  const columnOf = (model: DmmfModel, fieldName: string) => {
    const field = model.fields.find((f) => f.name === fieldName);
    if (!field) throw new Error(`${model.name}.${fieldName} not found`);
    return field.dbName ?? field.name;
  };
  const modelNamed = (name: string) => {
    const model = models.find((m) => m.name === name);
    if (!model) throw new Error(`model ${name} not found`);
    return model;
  };

  const shape: SchemaShape = { enums: {}, tables: {} };
  for (const e of enums) shape.enums[e.dbName ?? e.name] = e.values.map((v) => v.dbName ?? v.name);

  for (const model of models) {
    const table: TableShape = { columns: {}, indexes: {}, foreignKeys: {} };
    shape.tables[tableOf(model)] = table;
    for (const field of model.fields) {
      if (field.kind === "object") {
        if (field.relationFromFields && field.relationFromFields.length > 0) {
          const columns = field.relationFromFields.map((f) => columnOf(model, f));
          const target = modelNamed(field.type);
          table.foreignKeys[`${tableOf(model)}_${columns.join("_")}_fkey`] = {
            columns,
            references: tableOf(target),
            referencedColumns: (field.relationToFields ?? []).map((f) => columnOf(target, f)),
            onDelete: field.relationOnDelete ?? (field.isRequired ? "Restrict" : "SetNull"),
            onUpdate: field.relationOnUpdate ?? "Cascade",
          };
        }
        continue;
      }
      table.columns[field.dbName ?? field.name] = {
        type: prismaColumnType(field, enums),
        nullable: !field.isRequired,
        default: prismaDefault(field),
      };
    }
  }

  for (const index of indexes) {
    const model = modelNamed(index.model);
    const table = tableOf(model);
    const columns = index.fields.map((f) => columnOf(model, f.name));
    const name =
      index.dbName ??
      (index.type === "id"
        ? `${table}_pkey`
        : `${table}_${columns.join("_")}_${index.type === "unique" ? "key" : "idx"}`);
    const tableShape = shape.tables[table];
    if (tableShape) {
      tableShape.indexes[name] = {
        unique: index.type !== "normal",
        primary: index.type === "id",
        columns,
        where: predicateDeclaredFor(text, name),
      };
    }
  }
  return shape;
}

/** The `where: raw("…")` of the @@index/@@unique whose map is `name`, normalised; null for a full index. */
function predicateDeclaredFor(schemaText: string, name: string): string | null {
  const declaration = schemaText
    .split("\n")
    .find((line) => /^\s*@@(index|unique)\(/.test(line) && line.includes(`map: "${name}"`));
  const raw = declaration ? /where:\s*raw\("((?:[^"\\]|\\.)*)"\)/.exec(declaration)?.[1] : undefined;
  return raw === undefined ? null : normalisePredicate(raw.replace(/\\"/g, '"'));
}

/** Postgres prints a predicate with its own parentheses, casts and quoting; only the words and values compare. */
function normalisePredicate(predicate: string): string {
  return predicate
    .replace(/::[\w" ]+/g, "")
    .replace(/[()"\s]/g, "")
    .toLowerCase();
}

function prismaColumnType(field: DmmfField, enums: Dmmf["datamodel"]["enums"]): string {
  // Postgres names an array type after its element type with a leading underscore (text[] is _text).
  if (field.isList) return `_${prismaColumnType({ ...field, isList: false }, enums)}`;
  if (field.kind === "enum") {
    const e = enums.find((x) => x.name === field.type);
    return e?.dbName ?? field.type;
  }
  const [native, args] = field.nativeType ?? [undefined, []];
  const precision = args.length > 0 ? `(${args.join(",")})` : "";
  switch (field.type) {
    case "String":
      if (native === "Uuid") return "uuid";
      if (native === "VarChar") return `varchar${precision}`;
      if (native === "Char") return `bpchar${precision}`;
      return "text";
    case "Int":
      return "int4";
    case "BigInt":
      return "int8";
    case "Boolean":
      return "bool";
    case "Float":
      return "float8";
    case "Json":
      return native === "Json" ? "json" : "jsonb";
    case "Bytes":
      return "bytea";
    case "DateTime":
      if (native === "Timestamptz") return `timestamptz(${args[0] ?? 6})`;
      if (native === "Timestamp") return `timestamp(${args[0] ?? 6})`;
      return "timestamp(3)";
    case "Decimal":
      return `numeric${precision || "(65,30)"}`;
    default:
      throw new Error(`unmapped Prisma type ${field.type}`);
  }
}

function prismaDefault(field: DmmfField): string | null {
  const value = field.default as { name?: string; args?: unknown[] } | string | number | boolean | undefined;
  if (value === undefined) return null;
  // A list's default, [] or ["a"], is an array literal in Postgres: {} or {a}.
  if (Array.isArray(value)) return `{${value.map(String).join(",")}}`;
  if (typeof value === "object" && value !== null && "name" in value) {
    switch (value.name) {
      case "now":
        return "CURRENT_TIMESTAMP";
      case "autoincrement":
        return "autoincrement";
      case "dbgenerated":
        return String(value.args?.[0] ?? "");
      default:
        // uuid(), cuid(), nanoid(): generated by the client, no column default.
        return null;
    }
  }
  return String(value);
}

export async function shapeFromDatabase(client: pg.Client | pg.PoolClient): Promise<SchemaShape> {
  const shape: SchemaShape = { enums: {}, tables: {} };

  const enums = await client.query<{ name: string; value: string }>(`
    SELECT t.typname AS name, e.enumlabel AS value
    FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname = 'public' ORDER BY t.typname, e.enumsortorder`);
  for (const row of enums.rows) shape.enums[row.name] = [...(shape.enums[row.name] ?? []), row.value];

  const columns = await client.query<{
    table_name: string;
    column_name: string;
    udt_name: string;
    data_type: string;
    character_maximum_length: number | null;
    numeric_precision: number | null;
    numeric_scale: number | null;
    datetime_precision: number | null;
    is_nullable: "YES" | "NO";
    column_default: string | null;
  }>(`
    SELECT table_name, column_name, udt_name, data_type, character_maximum_length, numeric_precision,
           numeric_scale, datetime_precision, is_nullable, column_default
    FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name <> '_prisma_migrations'
    ORDER BY table_name, ordinal_position`);
  for (const row of columns.rows) {
    const table = shape.tables[row.table_name] ?? { columns: {}, indexes: {}, foreignKeys: {} };
    shape.tables[row.table_name] = table;
    table.columns[row.column_name] = {
      type: databaseColumnType(row),
      nullable: row.is_nullable === "YES",
      default: normaliseDatabaseDefault(row.column_default),
    };
  }

  const indexes = await client.query<{
    table_name: string;
    index_name: string;
    is_unique: boolean;
    is_primary: boolean;
    columns: string[];
    predicate: string | null;
  }>(`
    SELECT t.relname AS table_name, i.relname AS index_name, ix.indisunique AS is_unique,
           ix.indisprimary AS is_primary, pg_get_expr(ix.indpred, ix.indrelid) AS predicate,
           array(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY k(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.n)::text[] AS columns
    FROM pg_index ix
    JOIN pg_class t ON t.oid = ix.indrelid
    JOIN pg_class i ON i.oid = ix.indexrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname = 'public' AND t.relname <> '_prisma_migrations'`);
  for (const row of indexes.rows) {
    const table = shape.tables[row.table_name];
    if (table) {
      table.indexes[row.index_name] = {
        unique: row.is_unique,
        primary: row.is_primary,
        columns: row.columns,
        where: row.predicate === null ? null : normalisePredicate(row.predicate),
      };
    }
  }

  const foreignKeys = await client.query<{
    table_name: string;
    name: string;
    columns: string[];
    references: string;
    referenced_columns: string[];
    on_delete: string;
    on_update: string;
  }>(`
    SELECT t.relname AS table_name, c.conname AS name, r.relname AS references,
           array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.n)::text[] AS columns,
           array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.n)::text[] AS referenced_columns,
           c.confdeltype AS on_delete, c.confupdtype AS on_update
    FROM pg_constraint c
    JOIN pg_class t ON t.oid = c.conrelid
    JOIN pg_class r ON r.oid = c.confrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE c.contype = 'f' AND n.nspname = 'public'`);
  const actions: Record<string, string> = { a: "NoAction", r: "Restrict", c: "Cascade", n: "SetNull", d: "SetDefault" };
  for (const row of foreignKeys.rows) {
    const table = shape.tables[row.table_name];
    if (table) {
      table.foreignKeys[row.name] = {
        columns: row.columns,
        references: row.references,
        referencedColumns: row.referenced_columns,
        onDelete: actions[row.on_delete] ?? row.on_delete,
        onUpdate: actions[row.on_update] ?? row.on_update,
      };
    }
  }
  return shape;
}

function databaseColumnType(row: {
  udt_name: string;
  data_type: string;
  character_maximum_length: number | null;
  numeric_precision: number | null;
  numeric_scale: number | null;
  datetime_precision: number | null;
}): string {
  switch (row.udt_name) {
    case "varchar":
    case "bpchar":
      return row.character_maximum_length === null ? row.udt_name : `${row.udt_name}(${row.character_maximum_length})`;
    case "timestamptz":
    case "timestamp":
      return `${row.udt_name}(${row.datetime_precision})`;
    case "numeric":
      return `numeric(${row.numeric_precision},${row.numeric_scale})`;
    default:
      return row.udt_name;
  }
}

function normaliseDatabaseDefault(value: string | null): string | null {
  if (value === null) return null;
  if (/^nextval\(/.test(value)) return "autoincrement";
  // 'scheduled'::"AppointmentStatus" → scheduled, '{}'::jsonb → {}
  const literal = /^'((?:[^']|'')*)'::[\w" ]+(?:\[\])?$/.exec(value);
  if (literal) return (literal[1] ?? "").replace(/''/g, "'");
  return value;
}

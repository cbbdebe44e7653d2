//! Drivers as their users run them: pgvector's Python helper over psycopg, reading
//! vectors into numpy and sending numpy arrays as parameters (text and binary); pandas
//! through SQLAlchemy; node-postgres with pgvector-node; pgjdbc in its default mode.

use crate::common::{run_client, start_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_with_pgvector_register_vector_and_numpy() {
    if !crate::common::runs("python3", &["-c", "import psycopg, pgvector, numpy"]) {
        crate::common::missing_dependency(
            "psycopg_with_pgvector_register_vector_and_numpy",
            "the Python packages psycopg, pgvector and numpy",
            "pip install 'psycopg[binary]' pgvector numpy; .ci/run installs them",
        );
        return;
    }
    let server = start_server().await;
    let script = format!(
        r#"
import numpy as np, psycopg
from pgvector.psycopg import register_vector
conn = psycopg.connect("host=127.0.0.1 port={port} user=rankql dbname=rankql", autocommit=True)
register_vector(conn)
vector = conn.execute("SELECT embed('trail running shoes')").fetchone()[0].to_numpy()
assert vector.dtype == np.float32 and vector.shape == (384,), vector.shape
with conn.cursor(binary=True) as cur:
    binary = cur.execute("SELECT embed('trail running shoes')").fetchone()[0].to_numpy()
assert np.allclose(vector, binary)
a = np.array([1, 2, 3], dtype=np.float32)
b = np.array([1, 2, 3.5], dtype=np.float32)
for query in ("SELECT cosine(%t, %t)", "SELECT cosine(%b, %b)", "SELECT cosine(%s::vector, %s::vector)"):
    (score,) = conn.execute(query, (a, b)).fetchone()
    assert abs(score - float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))) < 1e-6, (query, score)
top = conn.execute(
    "SELECT title FROM products ORDER BY cosine(embed(title), %s) DESC LIMIT 1", (vector,)
).fetchone()[0]
print(top)
"#,
        port = server.port
    );
    let stdout = crate::common::run_python(script).await;
    assert!(stdout.contains("running"), "{stdout}");
}

/// pandas through SQLAlchemy's PostgreSQL dialect (psycopg): `read_sql` of a query;
/// `to_sql` of a DataFrame into a new table, read back with its NULLs, then appended to
/// and replaced (which reflects the table's columns first); SQLAlchemy's column
/// reflection of a demo table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pandas_read_sql_and_to_sql_through_sqlalchemy() {
    if !crate::common::runs("python3", &["-c", "import psycopg, sqlalchemy, pandas"]) {
        crate::common::missing_dependency(
            "pandas_read_sql_and_to_sql_through_sqlalchemy",
            "the Python packages psycopg, sqlalchemy and pandas",
            "pip install 'psycopg[binary]' sqlalchemy pandas; .ci/run installs them",
        );
        return;
    }
    let server = start_server().await;
    let script = format!(
        r#"
import pandas as pd, sqlalchemy as sa
engine = sa.create_engine("postgresql+psycopg://rankql@127.0.0.1:{port}/rankql")
products = pd.read_sql("SELECT product_id, title, price FROM products ORDER BY product_id LIMIT 5", engine)
assert products.shape == (5, 3), products.shape
frame = pd.DataFrame({{"a": [1, 2, 3], "b": ["x", "y", None], "c": [1.5, None, 2.5]}})
frame.to_sql("from_pandas", engine, index=False)
back = pd.read_sql("SELECT * FROM from_pandas ORDER BY a", engine)
print(back["a"].tolist(), back["b"].isna().tolist(), back["c"].isna().tolist())
frame.to_sql("from_pandas", engine, index=False, if_exists="append")
print(pd.read_sql("SELECT count(*) AS n FROM from_pandas", engine)["n"].tolist())
pd.DataFrame({{"x": [10, 20]}}).to_sql("from_pandas", engine, index=False, if_exists="replace")
print(pd.read_sql("SELECT * FROM from_pandas ORDER BY x", engine)["x"].tolist())
columns = sa.inspect(engine).get_columns("products")
print([(c["name"], str(c["type"]), c["nullable"]) for c in columns][:2])
"#,
        port = server.port
    );
    let stdout = crate::common::run_python(script).await;
    assert_eq!(
        stdout.trim(),
        "[1, 2, 3] [False, False, True] [False, True, False]\n[6]\n[10, 20]\n\
         [('product_id', 'BIGINT', False), ('title', 'TEXT', False)]"
    );
}

/// Where `.ci/run` installs node-postgres and pgvector-node (`npm install --prefix`).
fn node_modules() -> std::path::PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_default();
    std::path::PathBuf::from(home).join(".cache/rankql-node/node_modules")
}

/// node-postgres with pgvector-node's `registerTypes`: `SELECT 1` is a number (int4, not
/// the string node-postgres makes of an int8), a vector reads as an array of numbers and
/// goes back as a parameter through `pgvector.toSql`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_postgres_with_pgvector() {
    let modules = node_modules();
    let node_path = vec![("NODE_PATH".to_string(), modules.display().to_string())];
    let has_modules = std::process::Command::new("node")
        .args(["-e", "require('pg'); require('pgvector/pg')"])
        .envs(node_path.clone())
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_modules {
        crate::common::missing_dependency(
            "node_postgres_with_pgvector",
            "node with the npm packages pg and pgvector",
            "npm install --prefix ~/.cache/rankql-node pg@8.23.1 pgvector@0.2.1; .ci/run installs them",
        );
        return;
    }
    let server = start_server().await;
    let script = format!(
        r#"
const pg = require('pg');
const pgvector = require('pgvector/pg');
(async () => {{
  const client = new pg.Client({{ host: '127.0.0.1', port: {port}, user: 'rankql', database: 'rankql' }});
  await client.connect();
  await pgvector.registerTypes(client);
  const one = (await client.query('SELECT 1 AS one')).rows[0].one;
  const count = (await client.query('SELECT count(*) AS n FROM products')).rows[0].n;
  const lookup = (await client.query('SELECT title FROM products WHERE product_id = $1', [6])).rows[0].title;
  const v = (await client.query("SELECT embed('trail running shoes') AS v")).rows[0].v;
  const near = (await client.query(
    'SELECT title FROM products ORDER BY cosine(embed(title), $1) DESC LIMIT 1', [pgvector.toSql(v)])).rows[0].title;
  console.log(JSON.stringify({{ one, oneType: typeof one, count, isArray: Array.isArray(v), dims: v.length, near, lookup }}));
  await client.end();
}})().catch((e) => {{ console.error(e); process.exit(1); }});
"#,
        port = server.port
    );
    let stdout = run_client("node", vec!["-e".into(), script], node_path).await;
    assert!(
        stdout.contains(r#""one":1,"oneType":"number","count":"300","isArray":true,"dims":384"#),
        "{stdout}"
    );
    assert!(stdout.contains("running"), "{stdout}");
}

/// pgjdbc in its default (extended, server-prepared) mode: `getObject` types, a
/// prepared lookup, a parameter into `embed`, a `vector` column read through pgjdbc's
/// type lookup, and `DatabaseMetaData` as JDBC tools browse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgjdbc_queries_prepared_statements_and_metadata() {
    let jar = std::path::Path::new("/usr/share/java/postgresql.jar");
    if !(jar.is_file() && crate::common::runs("java", &["-version"])) {
        crate::common::missing_dependency(
            "pgjdbc_queries_prepared_statements_and_metadata",
            "pgjdbc (/usr/share/java/postgresql.jar) and java",
            "apt-get install libpostgresql-jdbc-java default-jre-headless; .ci/run installs it",
        );
        return;
    }
    let server = start_server().await;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("Jdbc.java");
    std::fs::write(&source, JDBC_CLIENT).unwrap();
    let stdout = run_client(
        "java",
        vec![
            "-cp".into(),
            jar.display().to_string(),
            source.display().to_string(),
            server.port.to_string(),
        ],
        Vec::new(),
    )
    .await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "literal Integer 1 count Long 300", "{stdout}");
    assert!(
        lines[1].starts_with("lookup ") && lines[2].contains("running"),
        "{stdout}"
    );
    assert!(lines[3].starts_with("vector PGobject vector ["), "{stdout}");
    assert!(lines[4].starts_with("product PostgreSQL 16"), "{stdout}");
    assert_eq!(lines[5..], ["tables 1", "columns 6"], "{stdout}");
}

const JDBC_CLIENT: &str = r#"
import java.sql.*;
public class Jdbc { public static void main(String[] a) throws Exception {
  String url = "jdbc:postgresql://127.0.0.1:" + a[0] + "/rankql?user=rankql";
  try (Connection c = DriverManager.getConnection(url)) {
    ResultSet r = c.createStatement().executeQuery("SELECT 1, count(*) FROM products");
    r.next();
    System.out.println("literal " + r.getObject(1).getClass().getSimpleName() + " " + r.getObject(1)
        + " count " + r.getObject(2).getClass().getSimpleName() + " " + r.getObject(2));
    PreparedStatement p = c.prepareStatement("SELECT title, price FROM products WHERE product_id = ?");
    String title = null;
    for (long id = 1; id <= 6; id++) { p.setLong(1, id); ResultSet q = p.executeQuery(); q.next(); title = q.getString(1); }
    System.out.println("lookup " + title);
    PreparedStatement s = c.prepareStatement(
        "SELECT title, cosine(embed(title), embed(?)) AS score FROM products ORDER BY score DESC LIMIT 1");
    s.setString(1, "trail running shoes");
    ResultSet t = s.executeQuery(); t.next();
    System.out.println("search " + t.getString(1));
    ResultSet v = c.createStatement().executeQuery("SELECT embed('hello') AS v"); v.next();
    Object vector = v.getObject(1);
    System.out.println("vector " + vector.getClass().getSimpleName() + " "
        + ((org.postgresql.util.PGobject) vector).getType() + " " + v.getString(1).substring(0, 3));
    DatabaseMetaData m = c.getMetaData();
    System.out.println("product " + m.getDatabaseProductName() + " " + m.getDatabaseMajorVersion());
    ResultSet tables = m.getTables(null, null, "products", new String[]{"TABLE"});
    int n = 0; while (tables.next()) n++;
    System.out.println("tables " + n);
    ResultSet columns = m.getColumns(null, null, "products", null);
    int k = 0; while (columns.next()) k++;
    System.out.println("columns " + k);
  }
}}
"#;

//! Drivers as their users run them: pgvector's Python helper over psycopg, reading
//! vectors into numpy and sending numpy arrays as parameters (text and binary); pandas
//! through SQLAlchemy.

use crate::common::start_server;

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

/// pandas through SQLAlchemy's PostgreSQL dialect (psycopg): `read_sql` of a query, and
/// `to_sql` of a DataFrame into a new table, read back with its NULLs.
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
"#,
        port = server.port
    );
    let stdout = crate::common::run_python(script).await;
    assert_eq!(
        stdout.trim(),
        "[1, 2, 3] [False, False, True] [False, True, False]"
    );
}

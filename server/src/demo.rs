//! TODO-S1: the Qinhuai demo world.

use crate::db::Conn;

pub fn seed(_conn: &mut Conn, _password: Option<&str>) -> anyhow::Result<Vec<(String, String)>> {
    Ok(Vec::new())
}

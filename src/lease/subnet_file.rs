//! The subnet file (`/run/flannel/subnet.env`), as flanneld writes it for flannel's CNI plugin
//! (`WriteSubnetFile` in flannel's `pkg/subnet`) and reads it back at the next start to ask
//! for the same subnet (`ReadCIDRFromSubnetFile` in its `main.go`).

use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};

use super::format::NetworkConfig;

/// flanneld's default `--subnet-file`.
pub const DEFAULT_SUBNET_FILE: &str = "/run/flannel/subnet.env";

/// The file's contents for a node holding `subnet` (and `ipv6_subnet`), byte for byte as
/// flanneld writes them: the network, the node's subnet as its first usable address with the
/// subnet's length (`10.244.1.1/24`), the IPv6 pair when the network is dual stack, the MTU
/// pods should use and whether the node masquerades.
pub fn contents(
    network: &NetworkConfig,
    subnet: Ipv4Net,
    ipv6_subnet: Option<Ipv6Net>,
    mtu: u32,
    ip_masq: bool,
) -> String {
    let first_v4 = Ipv4Addr::from(u32::from(subnet.network()).wrapping_add(1));
    let mut s = format!(
        "FLANNEL_NETWORK={}\nFLANNEL_SUBNET={}/{}\n",
        network.network,
        first_v4,
        subnet.prefix_len()
    );
    if let (Some(v6net), Some(v6)) = (&network.ipv6, ipv6_subnet) {
        let first_v6 = Ipv6Addr::from(u128::from(v6.network()).wrapping_add(1));
        s.push_str(&format!(
            "FLANNEL_IPV6_NETWORK={}\nFLANNEL_IPV6_SUBNET={}/{}\n",
            v6net.network,
            first_v6,
            v6.prefix_len()
        ));
    }
    s.push_str(&format!("FLANNEL_MTU={mtu}\nFLANNEL_IPMASQ={ip_masq}\n"));
    s
}

/// Writes [`contents`] to `path` atomically, as flanneld does (renameio): the directory is
/// created (mode 0755) if missing, the text goes to a temporary file beside `path` that is
/// synced, made mode 0644 and renamed over `path`. A reader sees the old file or the new one.
///
/// # Errors
/// Creating the directory or the temporary file, writing, syncing or renaming failed; the
/// temporary file is removed then.
pub fn write(path: &Path, text: &str) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)?;
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "subnet file path has no name")
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        // The umask may have narrowed the mode; flanneld ignores the umask too.
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The subnets a previous run wrote to the subnet file (`FLANNEL_SUBNET`, and
/// `FLANNEL_IPV6_SUBNET` if present), as networks (`10.244.1.1/24` reads as `10.244.1.0/24`).
///
/// `Ok(None)` when the file does not exist or holds no (single, valid) `FLANNEL_SUBNET`, as
/// flanneld then starts without a previous subnet too.
///
/// # Errors
/// The file exists but cannot be read.
pub fn read_previous(path: &Path) -> io::Result<Option<(Ipv4Net, Option<Ipv6Net>)>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let v4 = env_value(&text, "FLANNEL_SUBNET").and_then(|v| v.parse::<Ipv4Net>().ok());
    let v6 = env_value(&text, "FLANNEL_IPV6_SUBNET").and_then(|v| v.parse::<Ipv6Net>().ok());
    Ok(v4.map(|v4| (v4.trunc(), v6.map(|v6| v6.trunc()))))
}

/// The value of `key` in a dotenv text (`KEY=VALUE` lines, `#` comments, an optional
/// `export `, optional quotes); the last assignment wins.
fn env_value(text: &str, key: &str) -> Option<String> {
    text.lines().rev().map(str::trim).find_map(|l| {
        if l.starts_with('#') {
            return None;
        }
        let l = l.strip_prefix("export ").unwrap_or(l);
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches(['"', '\'']).to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(json: &str) -> NetworkConfig {
        NetworkConfig::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn contents_as_flanneld() {
        let n = network(r#"{"Network": "10.244.0.0/16"}"#);
        assert_eq!(
            contents(&n, "10.244.1.0/24".parse().unwrap(), None, 1450, false),
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n\
             FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
        );
        let n = network(
            r#"{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/56"}"#,
        );
        assert_eq!(
            contents(
                &n,
                "10.244.7.0/24".parse().unwrap(),
                Some("fd00:0:0:7::/64".parse().unwrap()),
                1472,
                true
            ),
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\n\
             FLANNEL_IPV6_NETWORK=fd00::/56\nFLANNEL_IPV6_SUBNET=fd00:0:0:7::1/64\n\
             FLANNEL_MTU=1472\nFLANNEL_IPMASQ=true\n"
        );
    }

    #[test]
    fn write_then_read_previous() {
        let dir = std::env::temp_dir().join(format!("tundra-subnet-env-{}", std::process::id()));
        let path = dir.join("deeper/subnet.env");
        assert_eq!(read_previous(&path).unwrap(), None);
        let n = network(
            r#"{"Network": "10.244.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/56"}"#,
        );
        let text = contents(
            &n,
            "10.244.7.0/24".parse().unwrap(),
            Some("fd00:0:0:7::/64".parse().unwrap()),
            1450,
            false,
        );
        write(&path, &text).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), text);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(
            read_previous(&path).unwrap(),
            Some((
                "10.244.7.0/24".parse().unwrap(),
                Some("fd00:0:0:7::/64".parse().unwrap())
            ))
        );
        // No temporary file left beside it.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["subnet.env"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn env_values() {
        let text = "# c\nexport FLANNEL_SUBNET=\"10.1.2.1/24\"\nFLANNEL_MTU=1400\nX=1=2\n";
        assert_eq!(
            env_value(text, "FLANNEL_SUBNET").as_deref(),
            Some("10.1.2.1/24")
        );
        assert_eq!(env_value(text, "X").as_deref(), Some("1=2"));
        assert_eq!(env_value(text, "FLANNEL_IPMASQ"), None);
    }
}

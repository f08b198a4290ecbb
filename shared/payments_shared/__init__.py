"""The payments platform's common library: ports, adapters and contracts every service shares."""

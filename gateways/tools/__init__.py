"""The tools around the gateways, at the top of the house with the CLI.

* :mod:`gateways.tools.confgen` — ``gateways conf``: web-server config
  snippets from the templates in ``conf_templates/``;
* :mod:`gateways.tools.doctor` — ``gateways check``: why a cgi-bin script
  does not run, and the command that fixes it;
* :mod:`gateways.tools.cgiscript` — ``gateways cgi-script``: a cgi-bin script
  that serves an application.

Nothing in the gateways or the engine imports them.
"""

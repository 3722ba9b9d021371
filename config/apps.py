"""Django's admin app with the project's admin site (config/admin_site.py) as `admin.site`."""

from django.contrib.admin.apps import AdminConfig


class WacAdminConfig(AdminConfig):
    default_site = "config.admin_site.WacAdminSite"
